"""The live schema read from the system catalogs, compared object by object, and the SQL to repair it."""
