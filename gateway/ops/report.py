"""The complaint report (`ringfence report telemarketing`, the UI's Report page): per calling
number, each call in the owner's zone, what made it unlawful or suspicious (law or heuristic,
`gateway.screening.complaint`), what Ringfence did, the totals, and the texts from that sender
in the form the 33700 spam-SMS service takes. As text ready to paste into SignalConso or a
complaint to the operator (French, or English), as CSV (one row per call or text), or JSON.

The paste-ready text is French by default whatever the UI's language: it goes to a French
authority or operator. Strangers' text (SMS bodies) is made inert in the text form and
neutralised in the CSV (`gateway.store.csv_cells`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.numbers import national_format
from gateway.screening.complaint import (
    Basis,
    Fact,
    NumberFinding,
    ReportedCall,
    analyse,
)
from gateway.screening.telemarketing import national_range, telemarketing_prefix
from gateway.store import Store
from gateway.store.csv_cells import neutralise
from gateway.store.models import CallRow, MessageRow
from gateway.untrusted import isolate, strip_controls

Language = Literal["fr", "en"]
Format = Literal["text", "csv", "json"]
FORMATS: tuple[Format, ...] = ("text", "csv", "json")
DEFAULT_DAYS = 30
MAX_CALLS = 50_000  # bounds one report's read (a year of a flooded line is far less)
SPAM_SMS_NUMBER = "33700"


@dataclass(frozen=True)
class ReportedText:
    """A text from a reported number."""

    local: datetime
    body: str
    verdict: str


@dataclass(frozen=True)
class ReportNumber:
    """One reported number: its findings and its texts."""

    finding: NumberFinding
    national: str
    texts: tuple[ReportedText, ...] = ()


@dataclass(frozen=True)
class Report:
    """The whole report for a period of local dates [since, until]."""

    since: date
    until: date
    timezone: str
    numbers: tuple[ReportNumber, ...]

    @property
    def totals(self) -> dict[str, int]:
        """Numbers, calls, calls with a fact of law of their own, calls outside legal hours,
        texts."""
        calls = [c for n in self.numbers for c in n.finding.calls]
        return {
            "numbers": len(self.numbers), "calls": len(calls),
            "unlawful_calls": sum(n.finding.unlawful_calls for n in self.numbers),
            "outside_hours": sum(1 for c in calls
                                 if any(f.code == "outside_hours" for f in c.facts)),
            "texts": sum(len(n.texts) for n in self.numbers),
        }


def period(since: date | None, until: date | None, today: date) -> tuple[date, date]:
    """The report's dates: the last DEFAULT_DAYS days up to today when not given."""
    until = until or today
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise ValueError(f"--since {since} is after --until {until}")
    return since, until


def _national(number: str, region: str) -> str:
    try:
        return national_format(number, region)
    except Exception:  # a malformed stored value is shown as stored
        return number


def build_report(store: Store, since: date, until: date, *, timezone: str,
                 home_region: str = "FR", repeat_calls: int = 3,
                 repeat_days: int = 7) -> Report:
    """Read the calls and texts of [since, until] (local dates) and find what to report."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(since, time(0), tzinfo=zone)
    end = datetime.combine(until + timedelta(days=1), time(0), tzinfo=zone)
    with store.db.session() as s:
        calls = [ReportedCall(at=r.at, number=r.number, action=r.action, outcome=r.outcome,
                              step=r.step)
                 for r in s.execute(
                     select(CallRow.at, CallRow.number, CallRow.action, CallRow.outcome,
                            CallRow.step)
                     .where(CallRow.at >= start, CallRow.at < end, CallRow.number.is_not(None))
                     .order_by(CallRow.at).limit(MAX_CALLS))]
        texts = list(s.execute(
            select(MessageRow.at, MessageRow.number, MessageRow.body, MessageRow.verdict,
                   MessageRow.step)
            .where(MessageRow.at >= start, MessageRow.at < end, MessageRow.number.is_not(None))
            .order_by(MessageRow.at).limit(MAX_CALLS)))
    findings = analyse(calls, timezone, country=home_region, repeat_calls=repeat_calls,
                       repeat_days=repeat_days)
    reported = {f.number for f in findings}
    # Senders who only texted: reported when their texts came from a reserved range or
    # were refused by the owner's block list.
    for t in texts:
        if t.number in reported:
            continue
        facts: list[Fact] = []
        prefix = telemarketing_prefix(t.number, home_region)
        if prefix is not None:
            facts.append(Fact("arcep_range", Basis.LAW, {"range": national_range(prefix)}))
        if t.step == "block":
            facts.append(Fact("block_list", Basis.OWNER))
        if facts:
            findings.append(NumberFinding(t.number, tuple(facts), ()))
            reported.add(t.number)
    by_sender: dict[str, list[ReportedText]] = {}
    for t in texts:
        if t.number in reported:
            by_sender.setdefault(t.number, []).append(
                ReportedText(t.at.astimezone(zone), t.body, t.verdict))
    numbers = tuple(ReportNumber(f, _national(f.number, home_region),
                                 tuple(by_sender.get(f.number, ())))
                    for f in findings)
    return Report(since, until, timezone, numbers)


# --------------------------------------------------------------------------- words

_WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Signalement de démarchage téléphonique abusif, du {since} au {until} "
                 "(heure de {zone})",
        "number": "Numéro appelant : {national} ({e164})",
        "calls": "Appels :",
        "texts": "SMS reçus de ce numéro (à transférer au 33700) :",
        "number_total": "Total pour ce numéro : {calls} appel(s), dont {unlawful} contraire(s) "
                        "à la loi par son heure ou faute de consentement ; {texts} SMS.",
        "totals": "Totaux : {numbers} numéro(s), {calls} appel(s), dont {outside} hors des "
                  "horaires légaux ; {texts} SMS.",
        "none": "Aucun appel à signaler sur cette période.",
        "did": "Ringfence : {what}",
        "law": "loi", "heuristic": "indice", "owner": "votre liste",
        "arcep_range": "numéro dans une tranche réservée par l'ARCEP au démarchage "
                       "téléphonique et aux appels automatisés ({range}, décision "
                       "n° 2022-1583)",
        "outside_hours": "appel hors des horaires autorisés pour le démarchage ({why} ; "
                         "décret n° 2022-1313, art. D. 223-9 du code de la consommation : "
                         "du lundi au vendredi, 10 h-13 h et 14 h-20 h, hors jours fériés)",
        "why_weekend": "week-end", "why_holiday": "jour férié", "why_hours": "heure",
        "no_consent": "depuis le 11 août 2026, démarchage interdit sans consentement "
                      "préalable (loi n° 2025-594 du 30 juin 2025, art. L. 223-1 du code de "
                      "la consommation) : je n'ai jamais donné mon consentement à cet "
                      "appelant",
        "over_limit": "{count} appels en {days} jours : au-delà de {limit} par professionnel "
                      "(art. D. 223-9 du code de la consommation), s'il s'agit du même "
                      "professionnel",
        "repeats": "{count} appels en {days} jours depuis ce numéro (appels répétés)",
        "block_list": "numéro que j'avais bloqué",
        "sms_howto": "Pour chaque SMS : transférez-le tel quel au 33700, puis répondez au "
                     "message de confirmation avec le numéro de l'expéditeur ({national}).",
        "legend": "« loi » : fait prévu par un texte en vigueur ; « indice » : une "
                  "présomption (par exemple des appels répétés), pas une infraction en soi ; "
                  "« votre liste » : votre propre classement.",
        "pass": "a sonné", "reject": "rejeté ({code})", "announce": "a entendu un message",
        "voicemail": "envoyé sur la messagerie", "challenge": "invité à taper une touche",
        "weekdays": "lundi mardi mercredi jeudi vendredi samedi dimanche",
        "moment": "{weekday} {day:02d}/{month:02d}/{year} {hour:02d}:{minute:02d}",
        "date": "{day:02d}/{month:02d}/{year}",
    },
    "en": {
        "title": "Report of unlawful telemarketing calls, {since} to {until} ({zone} time)",
        "number": "Calling number: {national} ({e164})",
        "calls": "Calls:",
        "texts": "Texts from this number (to forward to 33700):",
        "number_total": "Total for this number: {calls} call(s), {unlawful} unlawful by their "
                        "time or for lack of consent; {texts} text(s).",
        "totals": "Totals: {numbers} number(s), {calls} call(s), {outside} outside legal "
                  "hours; {texts} text(s).",
        "none": "No call to report in this period.",
        "did": "Ringfence: {what}",
        "law": "law", "heuristic": "heuristic", "owner": "your list",
        "arcep_range": "number in a range ARCEP reserves for telemarketing and automated calls "
                       "({range}, decision 2022-1583)",
        "outside_hours": "call outside the hours telemarketing is allowed ({why}; decree "
                         "2022-1313, Code de la consommation art. D. 223-9: Monday to Friday "
                         "10-13 h and 14-20 h, no public holidays)",
        "why_weekend": "weekend", "why_holiday": "public holiday", "why_hours": "time of day",
        "no_consent": "since 11 August 2026 telemarketing needs prior consent (law 2025-594 "
                      "of 30 June 2025, Code de la consommation art. L. 223-1): I never gave "
                      "this caller consent",
        "over_limit": "{count} calls in {days} days: more than {limit} per professional (Code "
                      "de la consommation art. D. 223-9), if it is the same professional",
        "repeats": "{count} calls in {days} days from this number (repeated calls)",
        "block_list": "a number I had blocked",
        "sms_howto": "For each text: forward it as it is to 33700, then answer the "
                     "confirmation with the sender's number ({national}).",
        "legend": "\"law\": a fact a text in force provides for; \"heuristic\": a presumption "
                  "(such as repeated calls), not an offence in itself; \"your list\": your "
                  "own classification.",
        "pass": "rang", "reject": "rejected ({code})", "announce": "heard a message",
        "voicemail": "sent to voicemail", "challenge": "asked to press a key",
        "weekdays": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
        "moment": "{weekday} {year}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}",
        "date": "{year}-{month:02d}-{day:02d}",
    },
}


def fact_text(fact: Fact, language: Language = "fr") -> str:
    """One fact in words, with its basis first: "[law] …"."""
    w = _WORDS[language]
    params = dict(fact.params)
    if fact.code == "outside_hours":
        params["why"] = w["why_" + str(params.get("why", "hours"))]
    return f"[{w[fact.basis.value]}] " + w[fact.code].format(**params)


def moment_text(local: datetime, language: Language = "fr") -> str:
    """A local time with its weekday, the reader's way."""
    w = _WORDS[language]
    return w["moment"].format(weekday=w["weekdays"].split()[local.weekday()], day=local.day,
                              month=local.month, year=local.year, hour=local.hour,
                              minute=local.minute)


def action_text(action: str, language: Language = "fr") -> str:
    """What Ringfence did, from the stored action."""
    kind, _, code = action.partition(":")
    template = _WORDS[language].get(kind)
    return template.format(code=code) if template and kind in (
        "pass", "reject", "announce", "voicemail", "challenge") else action


def inert_text(text: str) -> str:
    """A stranger's text for the plain-text report: one line, no controls, bidi isolated."""
    return isolate(strip_controls(text).strip())


def render_text(report: Report, language: Language = "fr") -> str:
    """The report as text to paste into SignalConso or a complaint to the operator."""
    w = _WORDS[language]

    def day(d: date) -> str:
        return w["date"].format(day=d.day, month=d.month, year=d.year)

    lines = [w["title"].format(since=day(report.since), until=day(report.until),
                               zone=report.timezone), ""]
    if not report.numbers:
        lines.append(w["none"])
    for entry in report.numbers:
        finding = entry.finding
        lines.append(w["number"].format(national=entry.national, e164=finding.number))
        lines += [f"  {fact_text(f, language)}" for f in finding.facts]
        if finding.calls:
            lines.append("  " + w["calls"])
        for c in finding.calls:
            facts = "; ".join(fact_text(f, language) for f in c.facts)
            did = w["did"].format(what=action_text(c.call.action, language))
            lines.append(f"  - {moment_text(c.local, language)}: "
                         + (f"{facts}; " if facts else "") + did)
        if entry.texts:
            lines.append("  " + w["texts"])
            lines += [f"  - {moment_text(t.local, language)}: « {inert_text(t.body)} »"
                      if language == "fr" else
                      f"  - {moment_text(t.local, language)}: \"{inert_text(t.body)}\""
                      for t in entry.texts]
            lines.append("  " + w["sms_howto"].format(national=entry.national))
        lines.append("  " + w["number_total"].format(calls=len(finding.calls),
                                                     unlawful=finding.unlawful_calls,
                                                     texts=len(entry.texts)))
        lines.append("")
    totals = report.totals
    lines.append(w["totals"].format(numbers=totals["numbers"], calls=totals["calls"],
                                    outside=totals["outside_hours"], texts=totals["texts"]))
    lines += ["", w["legend"]]
    return "\n".join(lines) + "\n"


CSV_HEADER = ("number", "national", "kind", "local_time", "weekday", "what_ringfence_did",
              "law", "heuristic", "your_list", "text")


def _split(facts: tuple[Fact, ...], language: Language) -> tuple[str, str, str]:
    by_basis = {b: "; ".join(fact_text(f, language).split("] ", 1)[1]
                             for f in facts if f.basis is b) for b in Basis}
    return by_basis[Basis.LAW], by_basis[Basis.HEURISTIC], by_basis[Basis.OWNER]


def render_csv(report: Report, language: Language = "fr") -> str:
    """One row per call and per text; cells a spreadsheet could evaluate are neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    weekdays = _WORDS[language]["weekdays"].split()
    for entry in report.numbers:
        finding = entry.finding
        for c in finding.calls:
            law, heuristic, owner = _split(finding.facts + c.facts, language)
            writer.writerow([neutralise(v) for v in (
                finding.number, entry.national, "call", c.local.isoformat(),
                weekdays[c.local.weekday()], action_text(c.call.action, language),
                law, heuristic, owner, "")])
        for t in entry.texts:
            law, heuristic, owner = _split(finding.facts, language)
            writer.writerow([neutralise(v) for v in (
                finding.number, entry.national, "text", t.local.isoformat(),
                weekdays[t.local.weekday()], t.verdict, law, heuristic, owner,
                strip_controls(t.body))])
    return out.getvalue()


def fact_json(fact: Fact, language: Language = "fr") -> dict[str, Any]:
    """A fact as JSON: code, basis, values and words."""
    return {"code": fact.code, "basis": fact.basis.value, "params": dict(fact.params),
            "text": fact_text(fact, language).split("] ", 1)[1]}


def render_json(report: Report, language: Language = "fr") -> dict[str, Any]:
    """The report as one JSON object (texts as received: JSON escapes them)."""
    return {
        "since": report.since.isoformat(), "until": report.until.isoformat(),
        "timezone": report.timezone, "totals": report.totals,
        "numbers": [{
            "number": e.finding.number, "national": e.national,
            "facts": [fact_json(f, language) for f in e.finding.facts],
            "calls": [{"time": c.local.isoformat(), "action": c.call.action,
                       "outcome": c.call.outcome, "what_ringfence_did":
                           action_text(c.call.action, language),
                       "facts": [fact_json(f, language) for f in c.facts]}
                      for c in e.finding.calls],
            "texts": [{"time": t.local.isoformat(), "text": t.body, "verdict": t.verdict,
                       "forward_to": SPAM_SMS_NUMBER} for t in e.texts],
            "totals": {"calls": len(e.finding.calls),
                       "unlawful_calls": e.finding.unlawful_calls, "texts": len(e.texts)},
        } for e in report.numbers],
        "complaint_text": render_text(report, language),
    }
