"""STIR/SHAKEN Identity headers (issue 14 item 4): PASSporTs read, checked against the caller,
their ES256 signature verified with a local or fetched certificate, and the rule kind."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.call.certificates import Certificates
from gateway.call.identity import caller_of
from gateway.call.passport import IdentityError, parse_identity, passport_of
from gateway.config import StirConfig
from gateway.screening import Policy, Rules, decide
from gateway.screening.caller import Passport, Signature
from gateway.screening.decide import Step
from gateway.screening.ratelimit import History
from gateway.screening.rules import InvalidField, RuleKind
from gateway.sip.message import SipRequest, parse_message
from gateway.store.rules import check_rule_params
from tests.helpers import caller, rule
from tests.stir import Signer, b64url, tamper

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
CALLER = caller("+33612345678")


def invite(*identities: str, user: str = "+33612345678") -> SipRequest:
    headers = "".join(f"Identity: {value}\r\n" for value in identities)
    text = (f"INVITE sip:home@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"
            f"\r\nFrom: <sip:{user}@127.0.0.1>;tag=1\r\nTo: <sip:home@127.0.0.1>\r\n"
            f"Call-ID: stir-1\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n")
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


@pytest.fixture
def signer() -> Signer:
    return Signer(now=NOW)


def test_a_real_shaped_passport_is_read_and_checked_against_the_caller(signer: Signer) -> None:
    who = caller_of(invite(signer.passport()), "FR", None, now=NOW)
    assert who.passport == Passport(
        attest="C", orig="33612345678", dest=("33162000000",),
        origid="123e4567-e89b-12d3-a456-426655440000", iat=int(NOW.timestamp()),
        orig_matches=True, signature=Signature.NO_CERTIFICATE, x5u=signer.x5u)
    other = caller_of(invite(signer.passport(orig="33699999999")), "FR", None, now=NOW)
    assert other.passport is not None and other.passport.orig_matches is False
    national = caller_of(invite(signer.passport(orig="0612345678")), "FR", None, now=NOW)
    assert national.passport is not None and national.passport.orig_matches is True
    assert caller_of(invite(), "FR", None, now=NOW).passport is None


def _spoiled(signer: Signer) -> list[tuple[str, str]]:
    good = signer.passport()
    token = good.split(";")[0]
    head, claims, sig = token.split(".")
    return [
        ("", "expected header.claims.signature"),
        ("garbage", "expected header.claims.signature"),
        (f"{head}..{sig}", "compact form"),
        (f"{head}.{claims}.{sig}.x", "expected header.claims.signature"),
        (f"{head}.{claims}!.{sig}", "the claims is not base64url"),
        (f"{head}.{b64url(b'[1, 2]')}.{sig}", "the claims is not a JSON object"),
        (f"{head}.{b64url(b'{nope')}.{sig}", "the claims is not JSON"),
        (f"{head}.{b64url(bytes([0xff, 0xfe]))}.{sig}", "the claims is not JSON"),
        (signer.passport(header={"alg": "RS256"}), "alg 'RS256', not ES256"),
        (signer.passport(attest="D"), "attest 'D' is not A, B or C"),
        (signer.passport(claims={"iat": "yesterday"}), "no iat"),
        (signer.passport(claims={"orig": "33612345678"}), "no orig claim"),
        (signer.passport(claims={"orig": {"tn": "+33 6 CALL ME"}}), "tn is not a telephone"),
        (signer.passport(claims={"dest": {"tn": "33162000000"}}), "dest tn is not a list"),
        (signer.passport(claims={"dest": {}}), "dest is empty"),
        ("a" * 9000, "longer than 8192 bytes"),
    ]


def test_malformed_identity_headers_are_named_and_never_raise(signer: Signer) -> None:
    for value, problem in _spoiled(signer):
        passport = passport_of(invite(value), CALLER, NOW, None)
        assert passport is not None
        assert problem in passport.problem, (value[:80], passport.problem)
        assert passport.attest is None


def test_a_diversion_passport_does_not_speak_for_the_caller(signer: Signer) -> None:
    div = signer.passport(header={"ppt": "div"}, params=";info=<x>;ppt=div")
    assert passport_of(invite(div), CALLER, NOW, None) == Passport(problem="no SHAKEN PASSporT")
    both = passport_of(invite(div, signer.passport(attest="B")), CALLER, NOW, None)
    assert both is not None and both.attest == "B"


@given(st.text(max_size=300))
def test_any_header_text_is_read_or_refused_with_a_reason(text: str) -> None:
    try:
        parse_identity(text)
    except IdentityError as exc:
        assert str(exc)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
HYPOTHESIS_SIGNER = Signer(now=NOW)  # one key: making one per example would be slow
CLAIM_NAMES = st.sampled_from(["attest", "orig", "dest", "iat", "origid", "tn", "uri"])


@settings(max_examples=50)
@given(claims=st.dictionaries(CLAIM_NAMES, JSON | st.dictionaries(CLAIM_NAMES, JSON),
                              max_size=6),
       header=st.dictionaries(st.sampled_from(["alg", "ppt", "x5u", "typ"]), JSON, max_size=4))
def test_any_signed_claims_give_a_passport_or_a_problem(
    claims: dict[str, object], header: dict[str, object],
) -> None:
    """Whatever a signer put in its token, reading it never raises."""
    identity = HYPOTHESIS_SIGNER.passport(header={"alg": "ES256", **header}, claims=claims)
    passport = passport_of(invite(identity), CALLER, NOW, None)
    assert passport is not None
    assert bool(passport.problem) or passport.iat is not None


# ------------------------------------------------------------------ the signature


def checker(tmp_path: Path, **options: object) -> Certificates:
    return Certificates(StirConfig(**options))  # type: ignore[arg-type]


def check(certificates: Certificates, identity: str, now: datetime = NOW) -> Signature:
    passport = passport_of(invite(identity), CALLER, now, certificates)
    assert passport is not None and not passport.problem, passport
    return passport.signature


def test_a_local_certificate_verifies_and_catches_a_tampered_claim(
    tmp_path: Path, signer: Signer,
) -> None:
    (tmp_path / "sp-1234.pem").write_bytes(signer.pem())
    certificates = checker(tmp_path, certificates_dir=tmp_path)
    assert check(certificates, signer.passport()) is Signature.VERIFIED
    assert check(certificates, tamper(signer.passport())) is Signature.INVALID
    impostor = Signer(x5u=signer.x5u, now=NOW)  # another key, claiming the same certificate
    assert check(certificates, impostor.passport()) is Signature.INVALID
    assert check(certificates, signer.passport(), NOW + timedelta(days=400)) is Signature.UNUSABLE
    elsewhere = Signer(x5u="https://cr.example.org/sp-9999.pem", now=NOW)
    assert check(certificates, elsewhere.passport()) is Signature.NO_CERTIFICATE


def test_a_local_file_is_found_only_by_a_plain_name(tmp_path: Path, signer: Signer) -> None:
    (tmp_path / "sp-1234.pem").write_bytes(signer.pem())
    certificates = checker(tmp_path, certificates_dir=tmp_path)
    for x5u in ("https://x/../sp-1234.pem/..", "https://x/", "https://x/.hidden"):
        sneaky = Signer(x5u=x5u, key=signer.key, now=NOW)
        assert check(certificates, sneaky.passport()) is Signature.NO_CERTIFICATE


def test_a_certificate_is_fetched_only_from_an_allowed_url(signer: Signer) -> None:
    fetched: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        fetched.append(url)
        return signer.pem()

    certificates = Certificates(StirConfig(certificate_urls=("https://cr.example.org/",),
                                           wait_ms=1000), fetch=fetch)
    assert check(certificates, signer.passport()) is Signature.VERIFIED
    assert check(certificates, signer.passport(attest="A")) is Signature.VERIFIED
    assert fetched == [signer.x5u]  # once: kept in memory for the calls after
    foreign = Signer(x5u="https://evil.example.net/sp-1234.pem", key=signer.key, now=NOW)
    assert check(certificates, foreign.passport()) is Signature.NO_CERTIFICATE
    assert fetched == [signer.x5u]


def test_a_slow_download_never_holds_the_call(signer: Signer) -> None:
    release = threading.Event()
    calls: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        calls.append(url)
        assert release.wait(30)
        return signer.pem()

    certificates = Certificates(StirConfig(certificate_urls=("https://cr.example.org/",),
                                           wait_ms=0), fetch=fetch)
    assert check(certificates, signer.passport()) is Signature.PENDING
    assert check(certificates, signer.passport()) is Signature.PENDING  # one download only
    release.set()
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while check(certificates, signer.passport()) is Signature.PENDING:
        assert datetime.now(UTC) < deadline, "the download never finished"
        threading.Event().wait(0.01)
    assert check(certificates, signer.passport()) is Signature.VERIFIED
    assert calls == [signer.x5u]


def test_a_failed_download_leaves_the_call_unverified(signer: Signer) -> None:
    def fetch(url: str, timeout: float) -> bytes:
        raise OSError("connection refused")

    certificates = Certificates(StirConfig(certificate_urls=("https://cr.example.org/",),
                                           wait_ms=1000), fetch=fetch)
    assert check(certificates, signer.passport()) is Signature.UNUSABLE


def test_stir_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"stir.certificate_urls\[0\] = 'file:///etc/'"):
        StirConfig(certificate_urls=("file:///etc/",))
    with pytest.raises(ValueError, match=r"stir\.wait_ms = 5000: expected 0 to 1000"):
        StirConfig(wait_ms=5000)


# ------------------------------------------------------------------ the rule kind


def stir_rule(**params: object) -> Rules:
    return Rules(Policy(rules=(rule("stir_attestation", "challenge", **params),)))


def with_passport(**fields: object) -> object:
    base = Passport(attest="C", orig="33612345678", dest=("33162000000",),
                    iat=int(NOW.timestamp()), orig_matches=True)
    return replace(CALLER, passport=replace(base, **fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "reason"), [
    ({}, "STIR/SHAKEN attestation C: the caller's network does not vouch for the number "
         "(signature not verified: no certificate for it)"),
    ({"signature": Signature.VERIFIED}, "STIR/SHAKEN attestation C: the caller's network does "
                                        "not vouch for the number (signature verified)"),
    ({"attest": "A", "orig_matches": False, "orig": "33699999999",
      "signature": Signature.PENDING},
     "the STIR/SHAKEN token was signed for 33699999999, not for this number (signature not "
     "verified yet: its certificate is being fetched)"),
    ({"attest": "A", "iat": int(NOW.timestamp()) - 600},
     "the STIR/SHAKEN token is 600 s old, more than 60 s: replayed? (signature not verified: "
     "no certificate for it)"),
    ({"attest": "A", "signature": Signature.INVALID},
     "the STIR/SHAKEN signature for 33612345678 does not verify with its certificate: forged "
     "or altered"),
])
def test_the_rule_says_what_is_doubtful_and_whether_it_was_verified(
    fields: dict[str, object], reason: str,
) -> None:
    decision = decide(with_passport(**fields), stir_rule(), History(), NOW)  # type: ignore[arg-type]
    assert decision.step is Step.RULE and str(decision.action) == "challenge"
    assert decision.reason == reason


@pytest.mark.parametrize("fields", [
    {"attest": "A"}, {"attest": "B", "signature": Signature.VERIFIED},
    {"attest": "A", "iat": int(NOW.timestamp()) - 50}, {"attest": "A", "orig_matches": None},
    {"attest": None, "problem": "garbage"},
])
def test_the_rule_leaves_a_sound_or_unreadable_passport_alone(fields: dict[str, object]) -> None:
    decision = decide(with_passport(**fields), stir_rule(), History(), NOW)  # type: ignore[arg-type]
    assert decision.step is not Step.RULE
    assert decide(CALLER, stir_rule(), History(), NOW).step is not Step.RULE  # no header


def test_the_rule_parameters_are_checked() -> None:
    def check_params(params: dict[str, object]) -> dict[str, object]:
        return check_rule_params(RuleKind.STIR_ATTESTATION, params)

    assert check_params({}) == {"attest": ["C"], "mismatch": True, "stale": True, "max_age": 60}
    assert check_params({"attest": ["c", "b", "B"]})["attest"] == ["B", "C"]
    for params, field in [({"attest": ["D"]}, "attest"), ({"attest": "C"}, "attest"),
                          ({"mismatch": "yes"}, "mismatch"), ({"max_age": 5}, "max_age"),
                          ({"max_age": True}, "max_age")]:
        with pytest.raises(InvalidField) as info:
            check_params(params)
        assert info.value.field == field
