"""Tooling around the CDK app: the local emulator loop and pull-request diff comments.

Nothing here is part of what gets deployed to AWS, except :mod:`alchemy_tools.local_emulator`,
which changes the synthesized template only when the local emulator is the target.
"""
