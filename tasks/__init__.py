"""tinyuki: a reproducible pipeline from a verified kernel tarball to a tiny UKI.

Each pipeline stage lives in its own module (fetch, verify, extract, patch,
configure, kernel, init, initramfs, embed, uki, boot, manifest); the modules
without a stage name hold the pure logic those stages share.
"""
