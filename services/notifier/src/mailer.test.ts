import { describe, expect, it } from 'vitest';
import { describeSmtpUrl, toSmtpError } from './mailer.ts';

describe('SMTP failures', () => {
  it('treats a 5xx answer as permanent and everything else as worth a retry', () => {
    const refused = Object.assign(new Error('Recipient address rejected'), { responseCode: 550, code: 'EENVELOPE' });
    expect(toSmtpError(refused)).toMatchObject({ permanent: true, responseCode: 550 });
    expect(toSmtpError(refused).message).toBe('EENVELOPE: Recipient address rejected');
    const busy = Object.assign(new Error('try again later'), { responseCode: 451 });
    expect(toSmtpError(busy)).toMatchObject({ permanent: false, responseCode: 451 });
    const down = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ESOCKET' });
    expect(toSmtpError(down)).toMatchObject({ permanent: false, responseCode: null });
  });

  it('never shows SMTP credentials', () => {
    expect(describeSmtpUrl('smtps://user:s3cret@mail.example.org:465/?pool=true')).toBe('smtps://mail.example.org:465');
  });
});
