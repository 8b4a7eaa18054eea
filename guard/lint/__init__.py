"""The migration lint: what a pending Prisma migration would lock or break in the running app.

script (a migration file parsed by PostgreSQL's own parser, with its `guard:allow` comments),
typechange (which column type changes rewrite the table), facts (what the live database already
holds), hazards (the rules, statement by statement, across the pending migrations in order).
"""
