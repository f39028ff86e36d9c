"""Tooling around the CDK app: the local emulator loop and pull-request diff comments.

Nothing here is part of what gets deployed to AWS, and the product (``app.py``, ``alchemy_stack``,
``alchemy_constructs``) imports nothing from here. The local emulator synthesizes through its own
app, :mod:`alchemy_tools.local_emulator.app`, which builds the product's stack and adapts it.
"""
