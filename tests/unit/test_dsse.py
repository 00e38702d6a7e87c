"""DSSE: PAE exactly as the specification defines it, checked against its published example."""

from __future__ import annotations

import base64

import pytest

from tvdeploy.bundle import dsse

SPEC_TYPE = "http://example.com/HelloWorld"
SPEC_BODY = b"hello world"
# protocol.md, "Test Vectors": ECDSA P-256/SHA-256, raw r||s signature.
SPEC_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
SPEC_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
SPEC_SIG = "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="


def test_pae_matches_the_spec_example() -> None:
    assert dsse.pae(SPEC_TYPE, SPEC_BODY) == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_the_spec_signature_verifies_over_our_pae() -> None:
    # The published signature was made over the spec's PAE; it verifies only over the same bytes.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    key = ec.EllipticCurvePublicNumbers(SPEC_X, SPEC_Y, ec.SECP256R1()).public_key()
    raw = base64.b64decode(SPEC_SIG)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(der, dsse.pae(SPEC_TYPE, SPEC_BODY), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(Exception):  # noqa: B017 - InvalidSignature
        key.verify(der, dsse.pae(SPEC_TYPE, b"hello world!"), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("payload_type", "body", "expected"),
    [
        ("", b"", b"DSSEv1 0  0 "),
        ("t", "é".encode(), "DSSEv1 1 t 2 é".encode()),  # lengths count bytes
        ("é", b"a b\n\x00", "DSSEv1 2 é 5 a b\n\x00".encode()),
        ("application/vnd.in-toto+json", b"{}", b"DSSEv1 28 application/vnd.in-toto+json 2 {}"),
    ],
)
def test_pae_lengths_are_byte_counts(payload_type: str, body: bytes, expected: bytes) -> None:
    assert dsse.pae(payload_type, body) == expected


def test_ed25519_envelope_round_trip() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    env = dsse.sign("application/vnd.in-toto+json", b'{"a":1}', key, "k1")
    parsed = dsse.parse(env.to_json())
    assert parsed == env
    assert dsse.verify(parsed, parsed.signatures[0], key.public_key())
    other = dsse.Envelope(parsed.payload_type, b'{"a":2}', parsed.signatures)
    assert not dsse.verify(other, parsed.signatures[0], key.public_key())
    # The type is authenticated too: the same payload under another type does not verify.
    retyped = dsse.Envelope("application/json", parsed.payload, parsed.signatures)
    assert not dsse.verify(retyped, parsed.signatures[0], key.public_key())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "malformed JSON"),
        (b"[]", "not a DSSE envelope"),
        (b'{"payload":"aGk=","payloadType":"t","signatures":[],"x":1}', "not a DSSE envelope"),
        (b'{"payload":"a!!","payloadType":"t","signatures":[{"keyid":"k","sig":"AA=="}]}', "not valid base64"),
        (b'{"payload":"aGk=","payloadType":"t","signatures":[]}', "non-empty list"),
        (b'{"payload":"aGk=","payloadType":"t","signatures":[{"keyid":"k"}]}', "signatures[0]"),
        (b'{"payload":"aGk=","payload":"aGk=","payloadType":"t","signatures":[]}', "duplicate key"),
        (b'{"payload":"aGk=","payloadType":1,"signatures":[{"keyid":"k","sig":"AA=="}]}', "payloadType"),
        (b"[" * 100_000, "malformed JSON"),
    ],
)
def test_malformed_envelopes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(dsse.EnvelopeError, match=message.replace("[", r"\[")):
        dsse.parse(data)
