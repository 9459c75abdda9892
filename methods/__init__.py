"""Avatar methods, one package each, installed as ``avatarbench.methods.<name>``.

Each method talks to the harness only through :class:`avatarbench.engine.method.AvatarMethod`
and is listed (data-only) in ``configs/methods/<name>.yaml``.
"""
