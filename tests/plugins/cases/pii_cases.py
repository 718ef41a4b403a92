"""Labelled PII cases: (text, kinds it contains). Card numbers and IBANs are
standard test numbers; every value is fake."""

from __future__ import annotations

CASES: list[tuple[str, frozenset[str]]] = [
    # positives
    ("Contact me at jane.doe@example.com for details.", frozenset({"email"})),
    ("Send the invoice to billing+eu@corp.example.co.uk today", frozenset({"email"})),
    ("My number is +1 415 555 0134, call after 5.", frozenset({"phone"})),
    ("Reach the office on (212) 555-0198.", frozenset({"phone"})),
    ("Appelez-moi au 06 12 34 56 78 demain.", frozenset({"phone"})),
    ("UK mobile: +44 7700 900123", frozenset({"phone"})),
    ("Pay with 4111 1111 1111 1111 exp 12/29", frozenset({"credit_card"})),
    ("card=5500-0000-0000-0004", frozenset({"credit_card"})),
    ("Amex 3782 822463 10005 on file", frozenset({"credit_card"})),
    ("cc4111111111111111exp12", frozenset({"credit_card"})),  # touching letters: still a card
    ("Wire it to GB82 WEST 1234 5698 7654 32 please", frozenset({"iban"})),
    ("IBAN: DE89370400440532013000", frozenset({"iban"})),
    ("SSN 078-05-1120 belongs to the applicant", frozenset({"national_id"})),
    ("National Insurance number AB 12 34 56 C", frozenset({"national_id"})),
    ("DNI 12345678Z del cliente", frozenset({"national_id"})),
    ("The server at 10.0.12.7 refused the connection", frozenset({"ip_address"})),
    ("Client IPv6 2001:db8:85a3::8a2e:370:7334 was blocked", frozenset({"ip_address"})),
    ("Use key sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA2b to call the API", frozenset({"api_key"})),
    ("AWS access key AKIAIOSFODNN7EXAMPLE leaked in logs", frozenset({"aws_key"})),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9abcdef", frozenset({"bearer_token"})),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", frozenset({"private_key"})),
    ("token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", frozenset({"github_token"})),
    ("db password: Tr0ub4dor&3x in the config", frozenset({"credential"})),
    ("Email a@b.io or call 415-555-0134", frozenset({"email", "phone"})),
    ("Name: Ann, email ann@mail.example.org, card 4012 8888 8888 1881", frozenset({"email", "credit_card"})),
    # negatives
    ("The meeting is on 2024-03-15 at 10:30 in room 4.", frozenset()),
    ("Order #123456789012 shipped yesterday.", frozenset()),
    ("Upgrade to version 1.2.3.4 before Friday.", frozenset()),
    ("Card 4111 1111 1111 1112 fails the checksum.", frozenset()),
    ("GB00 WEST 1234 5698 7654 32 is not a valid IBAN", frozenset()),
    ("Use std::vector<int> and std::map in C++.", frozenset()),
    ("The population grew from 1,234,567 to 2,345,678.", frozenset()),
    ("Install scikit-learn with pip; see sk-learn-documentation-pages.", frozenset()),
    ("Write to us via the contact form at example.com/contact.", frozenset()),
    ("Pi is approximately 3.14159265358979.", frozenset()),
    ("The @decorator syntax applies to functions.", frozenset()),
    ("Flight BA2490 departs at 17:45 from gate 22.", frozenset()),
    ("Invoice total: $12,450.00 due in 30 days.", frozenset()),
    ("ISBN 978-3-16-148410-0 is on the back cover.", frozenset()),
]
