// Wrapper around @prisma/adapter-pg 6.19 for the Wasm schema engine (engine: 'js').
//
// 1. The adapter throws UnsupportedNativeDataType for two PostgreSQL-internal column
//    types that the schema engine's own catalog queries return:
//      oid 19 `name`   -> reported as Text      (prisma/orm#27403)
//      oid 18 `"char"` -> reported as Character (reporting it as Text crashes the engine)
//    Without this, `migrate status` works but `migrate deploy`, `migrate dev` and
//    `db pull` fail.
// 2. connectToShadowDb is overridden so the shadow database name is chosen by us
//    (env PRISMA_SHADOW_DB_NAME, else prisma_guard_shadow_<uuid>) and is dropped
//    (WITH (FORCE)) when the engine disposes of it. (The stock one also connects to the
//    MAIN database when the adapter was built from a connectionString -- see withDatabase.)
//    `migrate dev` opens two shadows one after the other; with a fixed name it is reused.
//    A crash (wasm "unreachable") skips dispose: drop the name yourself afterwards.
// 3. executeScript sends a migration file whole (see below), like the native engine.
// 4. `?schema=NAME` sets search_path (see poolConfig); allowExitOnIdle on every pool.
import pg from 'pg'
import { PrismaPg } from '@prisma/adapter-pg'

const CHARACTER = 6 // ColumnTypeEnum.Character (@prisma/driver-adapter-utils)
const OID_CHAR = 18
const OID_NAME = 19
const OID_TEXT = 25

const log = (msg: string) => {
  if (process.env.PRISMA_GUARD_DEBUG) process.stderr.write(`[pg-adapter] ${msg}\n`)
}

// rows array of a pg result -> indices of its `"char"` columns (side channel from
// performIO to queryRaw; keyed by the rows array, which queryRaw returns unchanged).
const charColumns = new WeakMap<object, number[]>()

function patchQueryable<T extends Record<string, any>>(q: T): T {
  if (!q || (q as any).__guardPatched) return q
  ;(q as any).__guardPatched = true
  const performIO = q.performIO.bind(q)
  q.performIO = async (query: unknown) => {
    const res = await performIO(query)
    if (res && Array.isArray(res.fields)) {
      const chars: number[] = []
      res.fields.forEach((f: any, i: number) => {
        if (f.dataTypeID === OID_NAME) f.dataTypeID = OID_TEXT
        else if (f.dataTypeID === OID_CHAR) {
          f.dataTypeID = OID_TEXT // let the adapter accept it, then fix the type below
          chars.push(i)
        }
      })
      if (chars.length && res.rows) charColumns.set(res.rows, chars)
    }
    return res
  }
  const queryRaw = q.queryRaw.bind(q)
  q.queryRaw = async (query: unknown) => {
    const result = await queryRaw(query)
    const chars = result && charColumns.get(result.rows)
    if (chars) for (const i of chars) result.columnTypes[i] = CHARACTER
    return result
  }
  // 3. The stock executeScript (used to apply every migration.sql) splits the file on
  //    every ';' -- so a plpgsql body, DO block or a string containing ';' fails
  //    ("unterminated dollar-quoted string"). Send the whole file as ONE simple-protocol
  //    multi-statement query instead, which is what Prisma's native engine does
  //    (so, as with the native engine, CREATE INDEX CONCURRENTLY only works alone in a file).
  //    Set PRISMA_GUARD_STOCK_EXECUTE_SCRIPT=1 to keep the stock splitting behaviour.
  if (typeof q.executeScript === 'function' && !process.env.PRISMA_GUARD_STOCK_EXECUTE_SCRIPT) {
    q.executeScript = async (script: string) => {
      try {
        await q.client.query(script)
      } catch (error) {
        q.onError(error)
      }
    }
  }
  if (typeof q.startTransaction === 'function') {
    const startTransaction = q.startTransaction.bind(q)
    q.startTransaction = async (...args: unknown[]) => patchQueryable(await startTransaction(...args))
  }
  return q
}
// NOTE: pg lets `connectionString` override `database`, so the stock
// connectToShadowDb ({...config, database}) would connect to the MAIN database when
// the adapter is built from a connectionString. We rewrite the URL path instead.
function withDatabase(url: string, database: string): string {
  const u = new URL(url)
  u.pathname = '/' + encodeURIComponent(database)
  return u.toString()
}

// `?schema=NAME`: pg ignores the parameter and the adapter only *reports* the schema name
// (getConnectionInfo), so without this everything (tables AND _prisma_migrations) silently
// lands in `public`. Set search_path on every connection, like Prisma's native engine does.
function poolConfig(url: string, schema?: string): pg.PoolConfig {
  // allowExitOnIdle: the CLI does not always end the pool on success, so without this
  // node waits for pg's idle timeout (10 s) before exiting -- ~10 s on every successful
  // command (status/deploy/dev/resolve). Failures exit at once via process.exit.
  const config: pg.PoolConfig = { connectionString: url, allowExitOnIdle: true }
  if (schema) config.options = `-c search_path="${schema.replace(/"/g, '""')}"`
  return config
}

export class PrismaPgGuard extends PrismaPg {
  private readonly baseConfig: pg.PoolConfig
  constructor(private readonly baseUrl: string, private readonly baseOptions?: any) {
    const config = poolConfig(baseUrl, baseOptions?.schema)
    super(config, baseOptions)
    this.baseConfig = config
  }

  async connect() {
    log('connect')
    return patchQueryable(await super.connect()) as any
  }

  async connectToShadowDb() {
    const name =
      process.env.PRISMA_SHADOW_DB_NAME || `prisma_guard_shadow_${globalThis.crypto.randomUUID().replace(/-/g, '')}`
    log(`connectToShadowDb -> ${name}`)
    const admin = new pg.Client(this.baseConfig)
    await admin.connect()
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      await admin.query(`CREATE DATABASE "${name}"`)
    } finally {
      await admin.end()
    }
    const shadow = new PrismaPg(poolConfig(withDatabase(this.baseUrl, name), this.baseOptions?.schema), this.baseOptions)
    const adapter: any = patchQueryable(await shadow.connect())
    const dispose = adapter.dispose.bind(adapter)
    adapter.dispose = async () => {
      log(`dispose shadow ${name}`)
      await dispose()
      const c = new pg.Client(this.baseConfig)
      await c.connect()
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      } finally {
        await c.end()
      }
    }
    return adapter
  }
}
