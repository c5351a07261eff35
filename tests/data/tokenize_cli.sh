#!/bin/sh
# data.tokenize_cli: `pipetrain tokenize` encodes (ids checked against gpt-3-encoder's), decodes back
# byte for byte (cmp), honours --allow-special, and refuses bad input with one line and exit 1/2.
set -eu
pt=$1
d=tokenize_cli.tmp
rm -rf "$d" && mkdir -p "$d"
fail() { echo "data.tokenize_cli: $*" >&2; exit 1; }

[ "$(printf 'Hello world' | "$pt" tokenize --tokenizer gpt2)" = "15496 995" ] || fail "gpt2 ids of 'Hello world'"
[ "$(printf 'a<|endoftext|>b' | "$pt" tokenize --tokenizer gpt2 --allow-special)" = "64 50256 65" ] || fail "--allow-special"
[ "$(printf 'a<|endoftext|>b' | "$pt" tokenize --tokenizer gpt2)" = "64 27 91 437 1659 5239 91 29 65" ] || fail "special text without the flag"
[ "$(printf 'Hello world' | "$pt" tokenize --tokenizer cl100k)" = "9906 1917" ] || fail "cl100k ids"
[ "$(printf 'Hello world' | "$pt" tokenize --tokenizer o200k)" = "13225 2375" ] || fail "o200k ids"
[ "$(echo '15496 995' | "$pt" tokenize --tokenizer gpt2 --decode)" = "Hello world" ] || fail "decode"

# text with everything: round trips for every tokenizer, through files and stdin
printf 'Hello world\n\n   indented\tcode();\r\nI'"'"'m \344\275\240\345\245\275 \360\237\230\200 e\314\201 \377\376 bad <|endoftext|>\n' > "$d/text"
head -c 3000 /dev/urandom >> "$d/text" 2>/dev/null || true
for tok in gpt2 cl100k o200k byte; do
    "$pt" tokenize --tokenizer $tok --input "$d/text" > "$d/ids.$tok"
    "$pt" tokenize --tokenizer $tok --decode --input "$d/ids.$tok" > "$d/back.$tok"
    cmp "$d/text" "$d/back.$tok" || fail "$tok: decode(encode(x)) != x"
    "$pt" tokenize --tokenizer $tok --allow-special < "$d/text" | "$pt" tokenize --tokenizer $tok --decode > "$d/back2.$tok"
    cmp "$d/text" "$d/back2.$tok" || fail "$tok --allow-special: decode(encode(x)) != x"
done
: > "$d/empty"
[ "$("$pt" tokenize --tokenizer gpt2 --input "$d/empty")" = "" ] || fail "empty input"

# bad input: one line, the right exit code
set +e
echo '15496 x' | "$pt" tokenize --tokenizer gpt2 --decode 2> "$d/err"; rc=$?
[ $rc = 2 ] && grep -q '"x' "$d/err" || fail "a non-integer id (rc $rc): $(cat "$d/err")"
echo '99999999' | "$pt" tokenize --tokenizer gpt2 --decode 2> "$d/err"; rc=$?
[ $rc = 2 ] && grep -q 99999999 "$d/err" || fail "an id past the vocabulary (rc $rc): $(cat "$d/err")"
echo 'x' | "$pt" tokenize --tokenizer nosuch 2> "$d/err"; rc=$?
[ $rc = 2 ] && grep -q "unknown tokenizer" "$d/err" || fail "an unknown tokenizer (rc $rc): $(cat "$d/err")"
echo '[1]' > "$d/encoder.json"; echo 'a b' > "$d/vocab.bpe"
echo 'x' | "$pt" tokenize --tokenizer "$d/encoder.json" 2> "$d/err"; rc=$?
[ $rc = 1 ] && grep -q "encoder.json" "$d/err" && [ "$(wc -l < "$d/err")" = 1 ] || fail "a bad encoder.json (rc $rc): $(cat "$d/err")"
set -e
rm -rf "$d"
echo "data.tokenize_cli: ok"
