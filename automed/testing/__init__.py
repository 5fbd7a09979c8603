"""Test helpers shipped with the package: synthetic datasets and contract checks for extension points."""
