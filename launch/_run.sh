# Sourced by the launch scripts: print-then-run of one command, honouring DRY=1 (--dry-run).
quote() {  # one word, shell-quoted only when it needs it (as Python's shlex.quote)
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s' "$1"
  else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
quote_all() {  # all arguments as one shell-quoted string
  local out="" w
  for w in "$@"; do out+="$(quote "$w") "; done
  printf '%s' "${out% }"
}
run() {  # prints the command exactly (copy-pasteable); runs it unless DRY=1
  quote_all "$@"; echo
  if [ "${DRY:-0}" -eq 0 ]; then "$@"; fi
}
