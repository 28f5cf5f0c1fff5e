"""Prediction history: `recorder` turns each predicted image into a row for the background writer, `query` reads
rows back (filters, cursor pages, stored images), `export` streams them through pandas as CSV, JSON lines or
Parquet. The tables, migrations, writer and image store live in ai_service.storage.
"""
