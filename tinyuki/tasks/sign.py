"""sign: tinyuki.signed.efi, the UKI signed for Secure Boot with sbsign, for profiles with [sign].

The unsigned UKI (tasks/uki.py) stays an artifact: the signed one is a copy
with an Authenticode signature appended, made from the finished UKI, so
whatever signs it (sbsign here, osslsigncode or a signing service elsewhere)
hashes the same bytes. The signing time is the profile's source_date_epoch,
so the same UKI and key give the same signed bytes (tinyuki/secureboot.py).

A profile without [sign] has this stage off (tinyuki/stage.py's `when`): it
needs no key, writes nothing and the manifest lists no signed UKI. The
artifact cache does not store signed UKIs: signing takes a second, and a key
on a PKCS#11 token has no contents to put in a cache key.
"""

from __future__ import annotations

from typing import Any

from tinyuki.config.context import Context
from tinyuki.secureboot import SignRequest, cert_identity, sign_uki
from tinyuki.stage import Output, Stage
from tinyuki.tasks.uki import UKI
from tinyuki.util.runner import tool_version

SIGNED = Output("tinyuki.signed.efi", manifest="uki-signed")


def request(ctx: Context) -> SignRequest:
    """What [sign] asks for, as the library takes it (only called when the stage is on)."""
    s = ctx.profile.sign
    assert s.key is not None and s.cert is not None, "the sign stage runs only with [sign] key and cert"
    return SignRequest(key=s.key, cert=s.cert, passphrase=s.passphrase)


def build(ctx: Context) -> None:
    out = SIGNED.at(ctx)
    sha = sign_uki(UKI.at(ctx), out, request(ctx), epoch=ctx.profile.kernel.source_date_epoch,
                   log=ctx.paths.logs / "sign.log")
    print(f"sign: {out} (sha256 {sha[:16]}…), signed with {ctx.profile.sign.cert}")


def report(ctx: Context) -> dict[str, Any]:
    """For manifest.json: who signed the UKI and how (the certificate a verifier must trust, the tool, the time)."""
    sign = ctx.profile.sign
    assert sign.cert is not None, "the sign stage is on only with [sign] key and cert"
    return {"signing": {"certificate": cert_identity(sign.cert), "tool": tool_version(["sbsign", "--version"]),
                        "key": "pkcs11" if sign.pkcs11 else "file",
                        "signing_time": ctx.profile.kernel.source_date_epoch}}


STAGE = Stage(
    "sign", build=build,
    doc="Sign the UKI for Secure Boot with sbsign: tinyuki.signed.efi (on for profiles with [sign] key and cert).",
    needs=("uki",), outputs=(SIGNED,),
    tools=("sbsign", "openssl"), recipe=("tinyuki.secureboot", "tinyuki.formats.pe"),
    when=lambda ctx: ctx.profile.sign.enabled, report=report)
