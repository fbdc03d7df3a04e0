"""What the Streamlit pages share: cached state (``state``), the sidebar picker (``sidebar``),
the plotly figures (``charts``), putting escaped HTML on a page (``markup``) and the Batch
page's per-session work folder (``workdir``).

Kept light on purpose: importing this package imports nothing; ``charts`` and the plain
functions of ``sidebar`` work without Streamlit, while ``state``, ``markup`` and ``workdir``
need it.
"""
