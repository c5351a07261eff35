#!/bin/sh
# report.cli: `pipetrain report` as a user meets it: --help, the one-line errors and their exit
# codes (2: usage), and a page written for a run directory.
#   cli_report.sh PIPETRAIN TEST_REPORT WORK_DIR
set -u
B=$1 T=$2 W=$3
fail=0
rm -rf "$W" && mkdir -p "$W" || exit 1
check() { # check NAME WANT_RC WANT_TEXT CMD...
  name=$1 want=$2 text=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL $name: exit $rc, want $want: $out"; fail=1; fi
  case $out in *"$text"*) ;; *) echo "FAIL $name: output lacks '$text': $out"; fail=1 ;; esac
}
check help 0 "pipetrain report RUN_DIR" "$B" report --help
check no-arg 2 "needs the run directory" "$B" report
check no-dir 2 "$W/nope: no such directory" "$B" report "$W/nope"
mkdir -p "$W/empty"
check no-metrics 2 "is this a run directory? train writes metrics.jsonl there" "$B" report "$W/empty"
check bad-option 2 "--colour" "$B" report "$W/empty" --colour
"$T" fixture "$W/run" || exit 1
check ok 0 "report: $W/run/report.html (30 steps, 3 evals, plan, profile)" "$B" report "$W/run"
[ -s "$W/run/report.html" ] || { echo "FAIL: no $W/run/report.html"; fail=1; }
check no-profile-dir 2 "--profile $W/noprof: no such directory" "$B" report "$W/run" --profile "$W/noprof"
check output 0 "report: $W/x.html" "$B" report "$W/run" --output "$W/x.html"
printf '{"step":31,"loss":oops}\n{"step":32,"loss":1}\n' >> "$W/run/metrics.jsonl"
check bad-line 1 "$W/run/metrics.jsonl:34: not a JSON object" "$B" report "$W/run"
one_line=$("$B" report "$W/run" 2>&1 | wc -l)
[ "$one_line" -eq 1 ] || { echo "FAIL: the error is $one_line lines, want 1"; fail=1; }
[ $fail -eq 0 ] && echo "report.cli passed"
exit $fail
