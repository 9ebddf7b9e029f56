import { describe, expect, it } from 'vitest';
import { mailDomain, messageIdFor } from './deliveries.ts';
import { type RequestFacts, renderDecided, renderSubmitted } from './templates.ts';

const facts: RequestFacts = {
  approvalId: '0b8a3c2e-1111-4222-8333-444455556666',
  certificateId: '9f1e2d3c-1111-4222-8333-444455556666',
  jobKind: 'issuance',
  commonName: 'web.example.test',
  domains: ['web.example.test', 'www.example.test'],
  profileName: 'production-web',
  environment: 'production',
  justification: '<script>alert("x")</script> & more',
  requester: 'Ann <ann@example.test>',
  requestedAt: new Date('2025-03-01T10:00:00.123Z'),
  expiresAt: new Date('2025-03-08T10:00:00.123Z'),
  approvalsRequired: 2,
  votes: 1,
};

describe('templates', () => {
  it('renders the same facts as text and as escaped HTML', () => {
    const m = renderSubmitted({ publicUrl: 'https://cs.example.test/' }, facts);
    expect(m.subject).toBe('[Countersign] Approval needed: web.example.test (production-web, production)');
    expect(m.text).toContain('Justification: <script>alert("x")</script> & more');
    expect(m.text).toContain('Requested at:  2025-03-01 10:00:00 UTC');
    expect(m.text).toContain('1 of 2 required');
    expect(m.text).toContain(`curl -X POST 'https://cs.example.test/api/v1/approvals/${facts.approvalId}/approve'`);
    expect(m.html).not.toContain('<script>');
    expect(m.html).toContain('&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; more');
  });

  it('keeps a subject on one line whatever a note or name contains', () => {
    const m = renderDecided(
      { publicUrl: 'http://localhost:8080' },
      { ...facts, commonName: 'a.example.test\r\nBcc: evil@example.test' },
      { state: 'rejected', decidedBy: 'Bob', decidedAt: null, note: 'no' },
    );
    expect(m.subject).not.toMatch(/[\r\n]/);
    expect(m.text).toContain('Decided at:');
  });

  it('derives stable Message-IDs per event and recipient', () => {
    expect(mailDomain('Countersign <countersign@mail.example.org>')).toBe('mail.example.org');
    expect(mailDomain('no-address')).toBe('countersign.invalid');
    const a = messageIdFor('approval_submitted-x', 'a@example.test', 'mail.test');
    expect(a).toBe(messageIdFor('approval_submitted-x', 'a@example.test', 'mail.test'));
    expect(a).not.toBe(messageIdFor('approval_submitted-x', 'b@example.test', 'mail.test'));
    expect(a).toMatch(/^<approval_submitted-x\.[0-9a-f]{16}@mail\.test>$/);
  });
});
