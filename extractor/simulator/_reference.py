"""The tenant's reference tables: companies, departments, jobs, locations, codes.

Writes are validated against these tables the way a tenant validates against its
configured org structure (the guide: ``companyCode`` and ``departmentCode`` "must
exactly match values configured in the tenant"). Names include accents and
apostrophes so that extractors meet non-ASCII data early.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = [
    "DEPARTMENTS",
    "ETHNICITIES",
    "EXECUTIVE",
    "FIRST_NAMES",
    "FLSA_STATUSES",
    "GENDERS",
    "LAST_NAMES",
    "LOCATIONS",
    "PAY_GROUPS",
    "PAY_GROUPS_HOURLY",
    "PAY_GROUPS_SALARIED",
    "TERMINATION_REASONS",
    "Department",
    "Job",
    "Tenant",
    "email_safe",
]


@dataclass(frozen=True)
class Job:
    title: str
    code: str
    flsa_status: str


@dataclass(frozen=True)
class Department:
    prefix: str
    name: str
    weight: int
    jobs: tuple[Job, ...]


def _jobs(*rows: tuple[str, str, str]) -> tuple[Job, ...]:
    return tuple(Job(title, code, flsa) for title, code, flsa in rows)


EX, NX = "Exempt", "Non-Exempt"

EXECUTIVE = Department("EXEC", "Executive Office", 0, _jobs(("Chief Executive Officer", "CEO", EX)))
DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "ENG",
        "Engineering",
        24,
        _jobs(
            ("Software Engineer", "SWE1", EX),
            ("Senior Software Engineer", "SWE2", EX),
            ("Staff Engineer", "SWE3", EX),
            ("QA Analyst", "QAA", NX),
            ("Engineering Manager", "ENGM", EX),
        ),
    ),
    Department(
        "SALES",
        "Sales",
        18,
        _jobs(
            ("Account Executive", "AE", EX),
            ("Sales Development Representative", "SDR", NX),
            ("Sales Manager", "SLSM", EX),
        ),
    ),
    Department(
        "OPS",
        "Operations",
        20,
        _jobs(
            ("Operations Associate", "OPA", NX),
            ("Warehouse Associate", "WHA", NX),
            ("Forklift Operator", "FLO", NX),
            ("Operations Manager", "OPM", EX),
        ),
    ),
    Department(
        "SUP",
        "Customer Support",
        10,
        _jobs(("Customer Support Specialist", "CSS", NX), ("Support Team Lead", "CSL", NX)),
    ),
    Department(
        "FIN",
        "Finance",
        6,
        _jobs(
            ("Accountant", "ACCT", EX),
            ("Payroll Specialist", "PAYS", NX),
            ("Financial Analyst", "FINA", EX),
        ),
    ),
    Department(
        "HR",
        "Human Resources",
        5,
        _jobs(
            ("HR Generalist", "HRG", EX), ("Recruiter", "REC", EX), ("HR Coordinator", "HRC", NX)
        ),
    ),
    Department(
        "MKT",
        "Marketing",
        6,
        _jobs(("Marketing Specialist", "MKS", EX), ("Content Writer", "CWR", NX)),
    ),
    Department(
        "IT",
        "Information Technology",
        5,
        _jobs(("IT Support Technician", "ITS", NX), ("Systems Administrator", "SYSA", EX)),
    ),
    Department(
        "LEGAL",
        "Legal",
        2,
        _jobs(("Paralegal", "PARA", NX), ("Corporate Counsel", "CCNS", EX)),
    ),
)
DIRECTOR_JOB_CODE = "DIR"

LOCATIONS: tuple[str, ...] = (
    "NYC01",
    "CHI01",
    "ATL01",
    "DAL01",
    "DEN01",
    "SEA01",
    "SFO01",
    "BOS01",
    "MIA01",
    "PHX01",
    "AUS01",
    "RDU01",
    "MSP01",
    "TOR01",
    "LON01",
    "REMOTE",
)
PAY_GROUPS_HOURLY: tuple[str, ...] = ("WEEKLY", "BIWEEKLY")
PAY_GROUPS_SALARIED: tuple[str, ...] = ("BIWEEKLY", "SEMIMONTHLY", "MONTHLY")
PAY_GROUPS: frozenset[str] = frozenset(PAY_GROUPS_HOURLY + PAY_GROUPS_SALARIED)
TERMINATION_REASONS: frozenset[str] = frozenset(
    {"RESIGN", "RETIRE", "DISMISS", "LAYOFF", "CONTRACT_END"}
)
FLSA_STATUSES: frozenset[str] = frozenset({EX, NX})
ETHNICITIES: tuple[str, ...] = (
    "White",
    "Hispanic or Latino",
    "Black or African American",
    "Asian",
    "Two or More Races",
    "American Indian or Alaska Native",
    "Native Hawaiian or Other Pacific Islander",
)
GENDERS: tuple[str, ...] = ("Female", "Male", "Non-Binary")

_COMPANY_DOMAINS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "vandelay",
    "wonka",
    "stark",
    "wayne",
    "soylent",
)


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated names; an underscore joins a name with spaces ("Van_der_Berg")."""
    return tuple(word.replace("_", " ") for word in text.split())


FIRST_NAMES: tuple[str, ...] = _words(
    """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
    Richard Susan Joseph Jessica Thomas Sarah Christopher Karen Charles Lisa Daniel Nancy Matthew
    Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua
    Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald
    Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Dorothy Jacob Amy Gary Kathleen Nicholas
    Angela Eric Shirley Jonathan Emma Stephen Brenda Larry Pamela Justin Nicole Scott Anna Brandon
    Samantha Benjamin Katherine Samuel Christine Gregory Debra Alexander Rachel Patrick Carolyn
    Frank Janet Raymond Maria Jack Olivia Dennis Heather Jerry Helen Tyler Catherine Aaron Diane
    José María Zoë Renée François Chloé Mateo Sofía Nguyễn Aoife Siobhán Björn Søren Łukasz
    Priya Wei Hiroshi Aarav Fatima Oluwaseun Mohammed Ingrid Dmitri Anaïs"""
)
LAST_NAMES: tuple[str, ...] = _words(
    """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
    Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
    Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
    Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
    Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
    Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
    Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders
    Patel Myers Long Ross Foster O'Brien O'Connor D'Angelo Müller Groß Núñez Peña Øvergård
    Kowalczyk Dubois Lefèvre Schröder Yamamoto Chen Okafor Haddad Van_der_Berg"""
)


def email_safe(name: str) -> str:
    """Lowercase ASCII for an email's local part: accents folded, spaces and quotes dropped."""
    # ø, ł and ß have no decomposition, so NFKD alone would drop them.
    name = (name.replace("ø", "o").replace("Ø", "O").replace("ł", "l").replace("Ł", "L")).replace(
        "ß", "ss"
    )
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum()) or "x"


class Tenant:
    """The reference tables of one tenant with ``companies`` legal entities."""

    def __init__(self, companies: int) -> None:
        self.company_codes: tuple[str, ...] = tuple(f"CORP{n:02d}" for n in range(1, companies + 1))
        self.company_index = {code: i for i, code in enumerate(self.company_codes)}
        self.domains: tuple[str, ...] = tuple(
            (
                f"{_COMPANY_DOMAINS[i]}.example.com"
                if i < len(_COMPANY_DOMAINS)
                else f"corp{i + 1:02d}.example.com"
            )
            for i in range(companies)
        )
        # Each company works from a few sites; the first is its headquarters.
        self.company_locations: tuple[tuple[str, ...], ...] = tuple(
            (*(LOCATIONS[(3 * i + j) % (len(LOCATIONS) - 1)] for j in range(4)), "REMOTE")
            for i in range(companies)
        )
        self.department_codes: tuple[tuple[str, ...], ...] = tuple(
            tuple(f"{d.prefix}-{i + 1:02d}" for d in (EXECUTIVE, *DEPARTMENTS))
            for i in range(companies)
        )
        # departmentCode -> company index, for "must exist in the employee's company".
        self.department_company: dict[str, int] = {
            code: i for i, codes in enumerate(self.department_codes) for code in codes
        }
        self.locations: frozenset[str] = frozenset(LOCATIONS)
        self.job_codes: dict[str, str] = {
            job.title: job.code for dept in (EXECUTIVE, *DEPARTMENTS) for job in dept.jobs
        }
        self.job_flsa: dict[str, str] = {
            job.title: job.flsa_status for dept in (EXECUTIVE, *DEPARTMENTS) for job in dept.jobs
        }
        self.department_weights: tuple[int, ...] = tuple(d.weight for d in DEPARTMENTS)
        total = 0
        cumulative = []
        for weight in self.department_weights:
            total += weight
            cumulative.append(total)
        self.department_cumulative: tuple[int, ...] = tuple(cumulative)

    def job_code(self, title: str | None) -> str | None:
        """The job code of a title; titles outside the job table (set by PATCH) map to OTHER."""
        if title is None:
            return None
        if title.startswith("Director of "):
            return DIRECTOR_JOB_CODE
        return self.job_codes.get(title, "OTHER")
