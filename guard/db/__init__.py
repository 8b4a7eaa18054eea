"""The one PostgreSQL seam: connections and named queries, the catalog, the server's databases."""
