"""Sealed values (slapfed.ca.seal): HPKE to a certificate's P-256 key, bound to a
context. Round trips; a wrong key, another context, any altered byte, a truncated or
foreign text are refused with SealedValueInvalid, never another error; keys and
certificates from slapfed's own CA work as they are."""
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from slapfed.ca import identity as ids
from slapfed.ca import seal
from slapfed.ca.authority import CertificateAuthority
from slapfed.ca.errors import SealedValueInvalid

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
CTX = "connection/i-0123456789abcdef/password"


@pytest.mark.parametrize("value", ["", "s3cret", "é ☃ \U0001f511", "a\nb\r\n\x00c",
                                   "x" * seal.MAX_PLAINTEXT])
def test_round_trip(value):
    text = seal.seal(value, KEY.public_key(), CTX)
    assert seal.is_sealed(text) and text.isprintable() and "\n" not in text
    assert value.encode() not in text.encode() or value == ""
    assert seal.open_sealed(text, KEY, CTX) == value


def test_each_sealing_differs():
    a, b = (seal.seal("same", KEY.public_key(), CTX) for _ in range(2))
    assert a != b
    assert seal.open_sealed(a, KEY, CTX) == seal.open_sealed(b, KEY, CTX) == "same"


@pytest.mark.parametrize("case", ["other key", "other context", "not sealed", "truncated",
                                  "not base64", "empty body"])
def test_what_does_not_open_is_refused_clearly(case):
    text = seal.seal("s3cret", KEY.public_key(), CTX)
    key, ctx = KEY, CTX
    if case == "other key":
        key = OTHER
    elif case == "other context":
        ctx = "connection/i-0123456789abcdef/token"
    elif case == "not sealed":
        text = "s3cret"
    elif case == "truncated":
        text = text[:-10]
    elif case == "not base64":
        text = seal.PREFIX + "!!!!"
    elif case == "empty body":
        text = seal.PREFIX
    with pytest.raises(SealedValueInvalid) as info:
        seal.open_sealed(text, key, ctx)
    assert info.value.code == "sealed_value_invalid" and info.value.details


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=63))
def test_any_altered_byte_is_refused(position, flip):
    text = seal.seal("s3cret", KEY.public_key(), CTX)
    body = bytearray(text[len(seal.PREFIX):].encode())
    i = position % len(body)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    body[i] = alphabet[(alphabet.index(body[i]) + flip) % len(alphabet)]
    altered = seal.PREFIX + body.decode()
    try:
        opened = seal.open_sealed(altered, KEY, CTX)
    except SealedValueInvalid:
        return
    # only the last base64 character holds bits that are not data (padding)
    assert opened == "s3cret" and i == len(body) - 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_else(text):
    with pytest.raises(SealedValueInvalid):
        seal.open_sealed(seal.PREFIX + text, KEY, CTX)


def test_only_p256_keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p384 = ec.generate_private_key(ec.SECP384R1())
    for key in (rsa_key, p384):
        with pytest.raises(SealedValueInvalid):
            seal.seal("x", key.public_key(), CTX)
    with pytest.raises(SealedValueInvalid):
        seal.recipient_key("not a certificate")
    with pytest.raises(SealedValueInvalid):
        seal.seal("x" * (seal.MAX_PLAINTEXT + 1), KEY.public_key(), CTX)
    with pytest.raises(SealedValueInvalid):
        seal.seal("x", KEY.public_key(), "")


def test_sealed_to_an_identity_of_slapfeds_own_ca(tmp_path):
    ca = CertificateAuthority.init(str(tmp_path / "ca"), "test CA")
    files = ca.issue_with_new_key(ids.person("alice"), tmp_path / "alice")
    recipient = seal.recipient_key(files.cert_path.read_text())
    text = seal.seal("db-password", recipient, CTX)
    key = serialization.load_pem_private_key(files.key_path.read_bytes(), None)
    assert seal.open_sealed(text, key, CTX) == "db-password"


def test_open_all_keeps_going_past_a_bad_value():
    good = seal.seal("a", KEY.public_key(), "c/x")
    bad = seal.seal("b", OTHER.public_key(), "c/y")
    opened, problems = seal.open_all({"x": good, "y": bad, "url": "http://h/"}, KEY,
                                     lambda k: f"c/{k}")
    assert opened == {"x": "a", "url": "http://h/"}
    assert list(problems) == ["y"] and "does not open" in problems["y"]
