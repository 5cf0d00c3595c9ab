"""The store: the only code that speaks SQL (connector, statements, transitions, schema)."""
