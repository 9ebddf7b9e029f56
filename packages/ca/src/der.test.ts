import { describe, expect, it } from 'vitest';
import {
  bitString,
  boolean,
  children,
  DerError,
  decodeOid,
  explicit,
  integerFromUnsigned,
  namedBits,
  octetString,
  oid,
  readElement,
  readTime,
  readTopLevel,
  sequence,
  setOf,
  smallInteger,
  TAG_SEQUENCE,
  time,
  utf8String,
} from './der.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('DER writer', () => {
  it('encodes lengths in short and minimal long form', () => {
    expect(hex(octetString(Buffer.alloc(127))).slice(0, 4)).toBe('047f');
    expect(hex(octetString(Buffer.alloc(128))).slice(0, 6)).toBe('048180');
    expect(hex(octetString(Buffer.alloc(255))).slice(0, 6)).toBe('0481ff');
    expect(hex(octetString(Buffer.alloc(256))).slice(0, 8)).toBe('04820100');
    expect(hex(octetString(Buffer.alloc(70000))).slice(0, 10)).toBe('0483011170');
  });

  it('encodes INTEGERs minimally and positive', () => {
    expect(hex(smallInteger(0))).toBe('020100');
    expect(hex(smallInteger(2))).toBe('020102');
    expect(hex(smallInteger(127))).toBe('02017f');
    expect(hex(smallInteger(128))).toBe('02020080');
    expect(hex(smallInteger(256))).toBe('02020100');
    expect(hex(integerFromUnsigned(Buffer.from('00007f', 'hex')))).toBe('02017f');
    expect(hex(integerFromUnsigned(Buffer.from('0080', 'hex')))).toBe('02020080');
    expect(hex(integerFromUnsigned(Buffer.from('ff01', 'hex')))).toBe('020300ff01');
  });

  it('encodes OIDs', () => {
    expect(hex(oid('1.2.840.113549'))).toBe('06062a864886f70d');
    expect(hex(oid('2.5.29.17'))).toBe('0603551d11');
    expect(hex(oid('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302');
    expect(hex(oid('2.999.3'))).toBe('0603883703');
    expect(() => oid('1.40')).toThrow(DerError);
    expect(() => oid('1.02')).toThrow(DerError);
    for (const o of ['1.2.840.113549.1.1.11', '2.5.4.3', '1.3.101.112', '2.999.3', '0.9.2342']) {
      expect(decodeOid(oid(o).subarray(2))).toBe(o);
    }
  });

  it('encodes booleans, bit strings and named bits per DER', () => {
    expect(hex(boolean(true))).toBe('0101ff');
    expect(hex(boolean(false))).toBe('010100');
    expect(hex(bitString(Buffer.from([0xab])))).toBe('030200ab');
    // digitalSignature only: one octet, 7 unused bits.
    expect(hex(namedBits([0]))).toBe('03020780');
    // digitalSignature + keyEncipherment.
    expect(hex(namedBits([0, 2]))).toBe('030205a0');
    // keyCertSign + cRLSign.
    expect(hex(namedBits([5, 6]))).toBe('03020106');
    // decipherOnly forces a second octet.
    expect(hex(namedBits([0, 8]))).toBe('0303078080');
  });

  it('uses UTCTime through 2049 and GeneralizedTime from 2050', () => {
    expect(time(new Date('2049-12-31T23:59:59.999Z')).toString('latin1')).toBe('\x17\x0d491231235959Z');
    expect(time(new Date('2050-01-01T00:00:00Z')).toString('latin1')).toBe('\x18\x0f20500101000000Z');
    expect(time(new Date('1999-01-02T03:04:05Z')).toString('latin1')).toBe('\x17\x0d990102030405Z');
    for (const iso of [
      '2049-12-31T23:59:59Z',
      '2050-01-01T00:00:00Z',
      '1970-01-01T00:00:00Z',
      '2106-02-07T06:28:16Z',
    ]) {
      const enc = time(new Date(iso));
      expect(readTime(enc, readElement(enc, 0)).toISOString()).toBe(new Date(iso).toISOString());
    }
  });

  it('sorts SET OF members and nests constructed types', () => {
    const a = utf8String('b');
    const b = utf8String('a');
    expect(hex(setOf(a, b))).toBe(`3106${hex(b)}${hex(a)}`);
    expect(hex(explicit(0, smallInteger(2)))).toBe('a003020102');
    const seq = sequence(smallInteger(1), sequence(), octetString(Buffer.from([9])));
    const top = readTopLevel(seq, TAG_SEQUENCE);
    expect(children(seq, top).map((c) => c.tag)).toEqual([0x02, 0x30, 0x04]);
  });
});

describe('DER reader', () => {
  it('rejects non-DER and truncated input', () => {
    expect(() => readElement(Buffer.from('3080', 'hex'), 0)).toThrow(/indefinite/);
    expect(() => readElement(Buffer.from('04810100', 'hex'), 0)).toThrow(/non-minimal/);
    expect(() => readElement(Buffer.from('0482000100', 'hex'), 0)).toThrow(/non-minimal/);
    expect(() => readElement(Buffer.from('0405aabb', 'hex'), 0)).toThrow(/past its container/);
    expect(() => readTopLevel(Buffer.from('300000', 'hex'), TAG_SEQUENCE)).toThrow(/trailing/);
    expect(() => readElement(Buffer.from('1f8101', 'hex'), 0)).toThrow(/high-tag/);
    expect(() => decodeOid(Buffer.from('2a80', 'hex'))).toThrow(DerError);
    expect(() => decodeOid(Buffer.from('2a8001', 'hex'))).toThrow(/non-minimal/);
  });
});
