"""Kibana saved objects for the image alias and its run reports, and their import script (kibana.setup)."""
