"""Reusable constructs of the Alchemy platform.

Named ``alchemy_constructs`` rather than ``constructs``: a top-level package called
``constructs`` would shadow the ``constructs`` library that aws-cdk-lib imports.
"""
