// What matrix-js-sdk 37.8 needs of Node 22 on Node 20: Promise.withResolvers. Imported first by
// every driver here (an import runs before the importing module's own code).
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
