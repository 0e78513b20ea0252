/** A user error of the test environment: printed by the CLI as one line, `testenv: what happened: what to do`. */
export class TestenvError extends Error {
  readonly what: string;
  readonly todo: string;
  constructor(what: string, todo: string) {
    super(`${what}: ${todo}`);
    this.name = 'TestenvError';
    this.what = what;
    this.todo = todo;
  }
}

/** A bad command line or an unknown name: exit 2. */
export class UsageError extends TestenvError {}
