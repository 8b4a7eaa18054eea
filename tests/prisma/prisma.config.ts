// Prisma 6.19 config for the Wasm schema engine (no native engine download).
// Env:
//   DATABASE_URL              required; also what schema.prisma's env("DATABASE_URL") reads
//   PRISMA_SCHEMA             path to schema.prisma. Set it HERE, not only via --schema: the CLI's
//                             engine-type pre-check ignores `migrate <sub> --schema X` (its arg
//                             parser stops at the sub-command), finds no schema, falls back to
//                             engine type "library" and tries to download libquery_engine.
//                             (Alternative: run with cwd = the folder holding prisma/schema.prisma.)
//   PRISMA_MIGRATIONS_DIR     optional; migrations folder (default: <schema dir>/migrations)
//   PRISMA_SHADOW_DB_NAME     optional; shadow database name for migrate dev
import path from 'node:path'
import { defineConfig } from 'prisma/config'
import { PrismaPgGuard } from './pg-adapter'

// Exit-delay fix: the Wasm schema engine arms a 10 s JS timer (setTimeout from wasm,
// apparently the timeout around Migrate's pg_advisory_lock) and never clears it, so every
// successful deploy / dev / resolve sat ~10 s idle before node exited. Timers of 10 s or
// more are only guards, never work, so unref them: the process exits when the work is done.
// PRISMA_GUARD_KEEP_TIMERS=1 disables this.
if (!process.env.PRISMA_GUARD_KEEP_TIMERS) {
  const originalSetTimeout = globalThis.setTimeout
  globalThis.setTimeout = function (this: unknown, ...args: Parameters<typeof setTimeout>) {
    const timer = originalSetTimeout.apply(this, args)
    if (Number(args[1]) >= 10_000 && typeof (timer as any)?.unref === 'function') (timer as any).unref()
    return timer
  } as typeof setTimeout
}

// `?schema=NAME` is Prisma's URL convention; pg ignores it, the adapter takes it as an option.
function schemaOf(url: string): string | undefined {
  return new URL(url).searchParams.get('schema') || undefined
}

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  ...(process.env.PRISMA_SCHEMA ? { schema: path.resolve(process.env.PRISMA_SCHEMA) } : {}),
  ...(process.env.PRISMA_MIGRATIONS_DIR
    ? { migrations: { path: path.resolve(process.env.PRISMA_MIGRATIONS_DIR) } }
    : {}),
  async adapter() {
    const url = process.env.DATABASE_URL
    if (!url) throw new Error('DATABASE_URL is not set')
    const schema = schemaOf(url)
    return new PrismaPgGuard(url, schema ? { schema } : undefined)
  },
})
