'use strict';
// A V8 code cache for the CommonJS modules the jsii kernel loads (preloaded with `node --require`, see
// kernel_compile_cache.py).
//
// A synth of this stack loads some 800 modules of aws-cdk-lib and cdk-nag (25 MB of JavaScript), and compiling
// them is most of what it adds to an empty app's synth. Node 20 has no compile cache of its own, and Node 22's
// is keyed by path: the jsii kernel loads every package from a new temporary directory on each run, so a
// path-keyed cache would never hit. Here each module's code cache is keyed by the SHA-1 of its source, made
// after the run (so it holds the functions the run compiled lazily too), and handed to V8 on the next load.
// V8 checks each entry against the source and its own version and flags, and compiles afresh when one does
// not fit; any failure of the cache itself falls back to Node's own loader. Entries live in a directory
// only the user can write (ALCHEMY_JSII_COMPILE_CACHE, one subdirectory per Node version); a run that adds
// entries removes those written more than MAX_AGE_DAYS ago (one still in use is written again by the next run).

const crypto = require('crypto');
const fs = require('fs');
const Module = require('module');
const path = require('path');
const vm = require('vm');

const MAX_AGE_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

function privateDirectory(directory) {
  try {
    fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
    const stat = fs.statSync(directory);
    // Entries are code V8 runs: a directory others can write to would let them run theirs here.
    return stat.isDirectory() && stat.uid === process.getuid() && (stat.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

function makeRequire(module) {
  // What Node's own loader hands a module as `require`.
  const require = (id) => module.require(id);
  require.resolve = (request, options) => Module._resolveFilename(request, module, false, options);
  require.resolve.paths = (request) => Module._resolveLookupPaths(request, module);
  require.main = process.mainModule;
  require.extensions = Module._extensions;
  require.cache = Module._cache;
  return require;
}

function install(directory) {
  const unsaved = [];
  const compileUncached = Module.prototype._compile;
  const dynamicImport = vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;

  function compile(content, filename) {
    const entry = path.join(directory, crypto.createHash('sha1').update(content).digest('hex'));
    let cachedData;
    try {
      cachedData = fs.readFileSync(entry);
    } catch {
      cachedData = undefined;
    }
    const source = Module.wrap(content.startsWith('#!') ? `//${content}` : content);
    // The wrapper's text comes first on line 1: shift that line's columns back, so that stack traces point
    // where Node's own loader would (minified modules are all line 1).
    const options = { filename, cachedData, columnOffset: -Module.wrapper[0].length };
    if (dynamicImport) options.importModuleDynamically = dynamicImport;
    const script = new vm.Script(source, options);
    if (cachedData === undefined || script.cachedDataRejected) unsaved.push([entry, script]);
    return script.runInThisContext({ displayErrors: true });
  }

  Module.prototype._compile = function compileWithCache(content, filename) {
    let wrapper;
    try {
      wrapper = compile(content, filename);
    } catch {
      // A syntax error, or a cache that cannot be read: Node's own loader says what is wrong.
      return compileUncached.call(this, content, filename);
    }
    return wrapper.call(this.exports, this.exports, makeRequire(this), this, filename, path.dirname(filename));
  };

  process.once('exit', () => {
    if (unsaved.length === 0) return;
    for (const [entry, script] of unsaved) {
      try {
        const partial = `${entry}.${process.pid}`;
        fs.writeFileSync(partial, script.createCachedData(), { mode: 0o600 });
        fs.renameSync(partial, entry);
      } catch {
        // A cache that cannot be written costs the next run its compile, nothing else.
      }
    }
    try {
      const oldest = Date.now() - MAX_AGE_DAYS * DAY_MS;
      for (const name of fs.readdirSync(directory)) {
        const entry = path.join(directory, name);
        if (fs.statSync(entry).mtimeMs < oldest) fs.rmSync(entry, { force: true });
      }
    } catch {
      // Pruning is best effort too.
    }
  });
}

const root = process.env.ALCHEMY_JSII_COMPILE_CACHE;
if (root) {
  const directory = path.join(root, `${process.version}-${process.arch}`);
  if (privateDirectory(root) && privateDirectory(directory)) install(directory);
}
