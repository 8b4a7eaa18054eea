"""Settings, the app's DATABASE_URL forms, and the row rules: what guard is told to check."""
