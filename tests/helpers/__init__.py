"""Test helpers other test modules import: a local HTTP server, OpenPGP test keys, tarball builders."""
