"""Scripts that need a checkout of this repository: the book runner (``python -m tools.book``),
the browser installer and the app screenshot. Not part of the installed ``medclass`` package."""
