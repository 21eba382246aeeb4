"""`fmusic serve`: a local studio in the browser to hear, see and reshape what a model writes.

    from fractalmusic.studio.app import build
    app, studio = build(runs=["runs"])          # an ASGI app (Starlette) and the Studio behind it

Needs the `studio` extra (starlette, uvicorn, verovio): pip install "fractalmusic[studio]". The API is described in
docs/STUDIO.md.
"""
