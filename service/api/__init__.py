"""The web layer: the only part of ftserve that imports Litestar."""
