#!/bin/sh
# A program that petitions instead of acting (docket petition -- sh petition.sh). It pays
# two payouts and writes a report that needs both to have happened; it prints what it
# wants, one JSON line per effect, and holds no credential. The payout to closed-account
# is declined by the demo's rail, so the report is rejected with DEPENDENCY_FAILED.
fund() {
  printf '{"label": "fund-%s", "action": "SETTLEMENT.DEPOSIT_CONFIRMED", "subject": "%s", "payload": {"amount": 1000, "currency": "EUR"}}\n' "$1" "$1"
}
pay() {
  printf '{"label": "pay-%s", "action": "SETTLEMENT.PAYOUT_REQUESTED", "subject": "%s", "payload": {"amount": %s, "beneficiary": "%s"}, "after": ["fund-%s"]}\n' "$1" "$1" "$2" "$3" "$1"
}
fund stl-0100
fund stl-0101
pay stl-0100 400 acme
pay stl-0101 250 closed-account
printf '{"label": "report", "action": "FILE.WRITE", "subject": "reports/payouts.txt", "payload": {"path": "reports/payouts.txt", "contents": "paid acme 400 and closed-account 250"}, "after_outcome": ["pay-stl-0100", "pay-stl-0101"]}\n'
