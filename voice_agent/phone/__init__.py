"""The customer-service phone profile: numbers as callers say them, a SQLite shop, its tools."""
