import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * Bundles each service into services/<name>/dist/main.mjs: one file of plain
 * JavaScript that node runs without a TypeScript loader. Production (the
 * container image) and the benchmark run these; development and tests run the
 * sources through tsx. The loader alone costs each process tens of MB of
 * memory and a slower start.
 *
 * A few packages stay outside the bundle because they read files next to
 * their own code at run time (UI assets) or are optional native add-ons.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SERVICES = ['api', 'approval', 'issuer', 'notifier', 'reaper'] as const;
const EXTERNAL = [
  '@fastify/swagger-ui',
  '@bull-board/ui',
  'pg-native',
  'msgpackr-extract',
  'cpu-features',
  ...builtinModules,
  ...builtinModules.map((m) => `node:${m}`),
];

/**
 * Workspace code that finds files next to itself (the console's built assets)
 * keeps pointing at its own source location, not the bundle's: bundles are
 * built where they run (in the image, at /app).
 */
const keepSourceLocation: Plugin = {
  name: 'keep-source-location',
  setup(b) {
    b.onLoad({ filter: /[\\/]packages[\\/].*\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      return {
        contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)),
        loader: 'ts',
      };
    });
  },
};

for (const name of SERVICES) {
  const started = Date.now();
  await build({
    entryPoints: [join(ROOT, 'services', name, 'src', 'main.ts')],
    outfile: join(ROOT, 'services', name, 'dist', 'main.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Maps are written for debugging (node --enable-source-maps) but not loaded by default: they cost ~30 MB a process.
    sourcemap: 'linked',
    // Without comments and whitespace the source V8 keeps in memory is a third of the size; and comments
    // with non-ASCII text (em dashes in JSDoc) made V8 hold all of it as a two-byte string (11 MB in the
    // api). Names are kept, so stack traces stay readable; licences go to main.mjs.LEGAL.txt.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'linked',
    external: EXTERNAL,
    plugins: [keepSourceLocation],
    logLevel: 'warning',
    // CommonJS dependencies inside an ES module bundle still call require() and use __dirname.
    banner: {
      js: [
        "import { createRequire as __csCreateRequire } from 'node:module';",
        "import { fileURLToPath as __csFileURLToPath } from 'node:url';",
        "import { dirname as __csDirname } from 'node:path';",
        'const require = __csCreateRequire(import.meta.url);',
        'const __filename = __csFileURLToPath(import.meta.url);',
        'const __dirname = __csDirname(__filename);',
      ].join('\n'),
    },
  });
  process.stdout.write(`built services/${name}/dist/main.mjs in ${Date.now() - started} ms\n`);
}
