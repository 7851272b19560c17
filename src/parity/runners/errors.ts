/** A case (or a part of it) this build cannot run: reported as UNSUPPORTED, which fails the run. */
export class UnsupportedCase extends Error {
  constructor(what: string) {
    super(`not supported yet: ${what}`);
    this.name = 'UnsupportedCase';
  }
}
