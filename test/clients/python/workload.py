"""The driver workload (test/clients/driver-workload.ts) for psycopg 3, psycopg2 and asyncpg.

usage: workload.py psycopg|psycopg2|asyncpg HOST PORT
Prints one JSON report on stdout. The agent sends no password: the sidecar holds the credential.
"""

import asyncio
import json
import sys

ROW_SQL = "SELECT id, name, email, note, amount, signup, ref, doc, tags FROM customers WHERE id = "
COLUMNS = ["id", "name", "email", "note", "amount", "signup", "ref", "doc", "tags"]


def render(value):
    if isinstance(value, (list, tuple)):
        return [render(v) for v in value]
    if isinstance(value, (dict,)):
        return json.dumps(value)
    return str(value)


def row_of(values):
    return dict(zip(COLUMNS, [render(v) for v in values]))


def error_of(err):
    code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    return {"code": code, "message": str(err)}


# ------------------------------------------------------------------------------- psycopg 3


def run_psycopg(host, port):
    import psycopg
    from psycopg import ClientCursor

    dsn = f"host={host} port={port} user=agent dbname=airlock sslmode=disable"
    notices = []
    report = {"extras": {}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        report["select"] = row_of(conn.execute(ROW_SQL + "1").fetchone())
        # Server-side binding (psycopg 3's default): Parse/Bind; prepare=True names the statement.
        report["prepared"] = [
            row_of(conn.execute(ROW_SQL + "%s", (1,), prepare=True).fetchone()) for _ in range(8)
        ]
        try:
            conn.execute("DELETE FROM customers")
        except psycopg.Error as e:
            report["denied"] = error_of(e)
        report["after"] = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        tx = {}
        try:
            with conn.transaction():
                conn.execute("SELECT 1")
                conn.execute("DELETE FROM customers")
        except psycopg.Error as e:
            tx["denied"] = error_of(e)
        tx["after"] = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        report["tx"] = tx
        report["inserted"] = conn.execute("INSERT INTO events (what) VALUES (%s)", ("psycopg",)).rowcount
        cur = conn.execute("UPDATE customers SET name = name WHERE id = 1")
        report["approval"] = {"rows": cur.rowcount, "notices": notices}

        extras = report["extras"]
        # Client-side binding: the values are merged into the text (simple Query).
        with ClientCursor(conn) as c:
            c.execute(ROW_SQL + "%s", (1,))
            extras["clientBinding"] = row_of(c.fetchone())
        # Binary results, asked for explicitly.
        with conn.cursor(binary=True) as c:
            c.execute(ROW_SQL + "%s", (1,))
            extras["binary"] = row_of(c.fetchone())
        # A named (server-side) cursor: DECLARE, FETCH in batches, CLOSE; inside a transaction.
        with conn.transaction():
            with conn.cursor(name="named") as c:
                c.itersize = 1
                c.execute("SELECT email, note FROM customers UNION ALL SELECT 'x', 'y' ORDER BY 1")
                extras["namedCursor"] = [render(r) for r in c]
        # Pipeline mode: several statements, one of them denied, then the session goes on.
        piped = {}
        try:
            with conn.pipeline():
                c1 = conn.execute(ROW_SQL + "%s", (1,))
                conn.execute("DELETE FROM customers")
                c3 = conn.execute("SELECT 2")
                piped["first"] = row_of(c1.fetchone())
                c3.fetchone()
        except psycopg.Error as e:
            piped["denied"] = error_of(e)
        piped["after"] = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        extras["pipeline"] = piped
    return report


# ------------------------------------------------------------------------------- psycopg2


def run_psycopg2(host, port):
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user="agent", dbname="airlock", sslmode="disable")
    conn.autocommit = True
    report = {"extras": {}}
    cur = conn.cursor()

    def one(sql, params=None):
        cur.execute(sql, params)
        return cur.fetchone()

    report["select"] = row_of(one(ROW_SQL + "1"))
    # psycopg2 binds on the client; PREPARE/EXECUTE makes a server-side prepared statement.
    cur.execute("PREPARE by_id(int) AS " + ROW_SQL + "$1")
    report["prepared"] = [row_of(one("EXECUTE by_id(%s)", (1,))) for _ in range(8)]
    try:
        cur.execute("DELETE FROM customers")
    except psycopg2.Error as e:
        report["denied"] = error_of(e)
    report["after"] = one("SELECT count(*) FROM customers")[0]
    conn.autocommit = False
    tx = {}
    try:
        cur.execute("SELECT 1")
        cur.execute("DELETE FROM customers")
    except psycopg2.Error as e:
        tx["denied"] = error_of(e)
        conn.rollback()
    conn.autocommit = True
    tx["after"] = one("SELECT count(*) FROM customers")[0]
    report["tx"] = tx
    cur.execute("INSERT INTO events (what) VALUES (%s)", ("psycopg2",))
    report["inserted"] = cur.rowcount
    cur.execute("UPDATE customers SET name = name WHERE id = 1")
    report["approval"] = {"rows": cur.rowcount, "notices": [n.strip() for n in conn.notices]}
    conn.autocommit = False
    named = conn.cursor(name="named")
    named.itersize = 1
    named.execute("SELECT email, note FROM customers ORDER BY 1")
    report["extras"]["namedCursor"] = [render(r) for r in named]
    named.close()
    conn.commit()
    conn.close()
    return report


# ------------------------------------------------------------------------------- asyncpg


async def run_asyncpg(host, port):
    import asyncpg

    notices = []
    conn = await asyncpg.connect(host=host, port=port, user="agent", database="airlock", ssl=False)
    conn.add_log_listener(lambda _c, m: notices.append(m.message))
    report = {"extras": {}}
    report["select"] = row_of(await conn.fetchrow(ROW_SQL + "1"))
    stmt = await conn.prepare(ROW_SQL + "$1")
    report["prepared"] = [row_of(await stmt.fetchrow(1)) for _ in range(8)]
    try:
        await conn.execute("DELETE FROM customers")
    except asyncpg.PostgresError as e:
        report["denied"] = error_of(e)
    report["after"] = await conn.fetchval("SELECT count(*) FROM customers")
    tx = {}
    try:
        async with conn.transaction():
            await conn.fetchval("SELECT 1")
            await conn.execute("DELETE FROM customers WHERE id = $1", 1)
    except asyncpg.PostgresError as e:
        tx["denied"] = error_of(e)
    tx["after"] = await conn.fetchval("SELECT count(*) FROM customers")
    report["tx"] = tx
    status = await conn.execute("INSERT INTO events (what) VALUES ($1)", "asyncpg")
    report["inserted"] = int(status.split()[-1])
    status = await conn.execute("UPDATE customers SET name = name WHERE id = $1", 1)
    report["approval"] = {"rows": int(status.split()[-1]), "notices": notices}

    extras = report["extras"]
    # A value derived from the covered column in a type that cannot carry a mask: refused, and
    # the cast it names works.
    try:
        await conn.fetchval("SELECT length(email) AS n FROM customers")
    except asyncpg.PostgresError as e:
        extras["derivedInt"] = error_of(e)
    extras["derivedText"] = await conn.fetchval("SELECT length(email)::text AS n FROM customers")
    extras["selectOne"] = await conn.fetchval("SELECT 1")
    # An enum and citext (types defined in the database), in binary.
    extras["typed"] = render(list(await conn.fetchrow("SELECT tier, handle, handles FROM accounts")))
    # A cursor inside a transaction.
    async with conn.transaction():
        extras["cursor"] = [render(list(r)) async for r in conn.cursor("SELECT email, note FROM customers")]
    # copy_from_query: COPY ... TO STDOUT.
    try:
        buf = bytearray()
        await conn.copy_from_query("SELECT email, note FROM customers", output=lambda b: _append(buf, b))
        extras["copy"] = buf.decode()
    except asyncpg.PostgresError as e:
        extras["copy"] = error_of(e)
    await conn.close()

    # Pool: acquire, query, release (its reset query runs at release).
    pool = await asyncpg.create_pool(
        host=host, port=port, user="agent", database="airlock", ssl=False, min_size=1, max_size=2
    )
    pooled = []
    for _ in range(3):
        async with pool.acquire() as c:
            pooled.append(row_of(await c.fetchrow(ROW_SQL + "$1", 1)))
    extras["pool"] = pooled
    await pool.close()
    return report


async def _append(buf, b):
    buf.extend(b)


def main():
    driver, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if driver == "psycopg":
        report = run_psycopg(host, port)
    elif driver == "psycopg2":
        report = run_psycopg2(host, port)
    elif driver == "asyncpg":
        report = asyncio.run(run_asyncpg(host, port))
    else:
        raise SystemExit(f"unknown driver {driver!r}: psycopg, psycopg2 or asyncpg")
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
