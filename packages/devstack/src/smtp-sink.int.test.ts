import { readFile } from 'node:fs/promises';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SinkIndexEntry, type SmtpSink, startSmtpSink } from './smtp-sink.ts';
import { captureLog, makeTempDir } from './test-helpers.ts';

describe('startSmtpSink', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let sink: SmtpSink;

  beforeAll(async () => {
    tmp = await makeTempDir('smtp-test');
    sink = await startSmtpSink({ dir: tmp.path, log: captureLog().log });
  });
  afterAll(async () => {
    await sink.stop();
    await tmp.remove();
  });

  it('stores sent mail in memory, as .eml and in index.jsonl', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, secure: false });
    const waiting = sink.waitFor((m) => m.subject === 'Approval needed', 5_000);
    const info = await transport.sendMail({
      from: 'countersign@example.test',
      to: 'approver@example.test',
      bcc: 'audit@example.test',
      subject: 'Approval needed',
      text: 'Please approve request 42',
      html: '<p>Please approve request 42</p>',
      headers: { 'X-Countersign-Request': '42' },
    });
    const message = await waiting;
    expect(message.from).toBe('countersign@example.test');
    expect(message.to).toEqual(['approver@example.test', 'audit@example.test']);
    expect(message.headerTo).toEqual(['approver@example.test']);
    expect(message.text.trim()).toBe('Please approve request 42');
    expect(message.html).toContain('<p>Please approve request 42</p>');
    expect(message.messageId).toBe(info.messageId);
    expect(message.headers['x-countersign-request']).toBe('42');
    expect(sink.messages()).toHaveLength(1);

    const eml = await readFile(message.file, 'utf8');
    expect(eml).toContain('Subject: Approval needed');
    expect(message.file).toMatch(/\/\d{4}-\d\d-\d\dT[\d-]+Z-1\.eml$/);
    const index = (await readFile(`${tmp.path}/index.jsonl`, 'utf8')).trim().split('\n');
    const entry = JSON.parse(index[0] ?? '') as SinkIndexEntry;
    expect(entry).toMatchObject({
      from: 'countersign@example.test',
      to: ['approver@example.test', 'audit@example.test'],
      subject: 'Approval needed',
      messageId: info.messageId,
    });

    sink.clear();
    expect(sink.messages()).toHaveLength(0);
    transport.close();
  });

  it('accepts credentials from apps configured with SMTP auth', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sink.port,
      secure: false,
      auth: { user: 'any', pass: 'thing' },
    });
    await transport.sendMail({ from: 'a@example.test', to: 'b@example.test', subject: 'with auth', text: 'x' });
    const message = await sink.waitFor((m) => m.subject === 'with auth', 5_000);
    expect(message.to).toEqual(['b@example.test']);
    transport.close();
  });

  it('waitFor rejects with what arrived when nothing matches', async () => {
    await expect(sink.waitFor((m) => m.subject === 'never', 100)).rejects.toThrow(/no matching message within 100 ms/);
  });
  it('with keep: false accepts and counts mail but stores none (the benchmark sink)', async () => {
    const dir = await makeTempDir('smtp-discard');
    const discard = await startSmtpSink({ dir: dir.path, log: captureLog().log, keep: false });
    try {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: discard.port, secure: false });
      for (const n of [1, 2, 3]) {
        const info = await transport.sendMail({
          from: 'a@example.test',
          to: 'b@example.test',
          subject: `m${n}`,
          text: 'x',
        });
        expect(info.response).toMatch(/^250/);
      }
      transport.close();
      expect(discard.accepted()).toBe(3);
      expect(discard.messages()).toEqual([]);
      await expect(readFile(`${dir.path}/index.jsonl`, 'utf8')).rejects.toThrow();
    } finally {
      await discard.stop();
      await dir.remove();
    }
  });
});
