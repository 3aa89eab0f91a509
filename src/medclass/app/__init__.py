"""The Streamlit demo app; ``streamlit_app.py`` is the page, ``medclass.serving`` its logic."""
