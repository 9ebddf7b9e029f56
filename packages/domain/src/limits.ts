/**
 * How many DNS names one certificate may carry, its common name counted among
 * them: a request's body, a CSR, a renewal's CSR and a queued request are held
 * to it alike (the HTTP and queue schemas use it for `sans`, the workflow
 * checks the names it actually collects). Every name is checked against the
 * profile and shown to the approvers; a cap keeps that work and that list
 * bounded.
 */
export const MAX_CERTIFICATE_NAMES = 100;
