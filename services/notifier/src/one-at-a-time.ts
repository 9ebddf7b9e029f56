/**
 * Runs the functions it is given one after another, in call order: a call
 * waits until every earlier one has settled. A failed call fails only its
 * own caller; the next one still runs.
 */
export function oneAtATime(): <T>(fn: () => Promise<T>) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return (fn) => {
    const turn = last.then(fn);
    last = turn.catch(() => {});
    return turn;
  };
}
