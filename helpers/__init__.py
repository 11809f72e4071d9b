"""Glue between the Streamlit pages and the ML core in ``utils/``.

Pages call helpers; helpers call ``utils``. Nothing here trains or defines models.
"""
