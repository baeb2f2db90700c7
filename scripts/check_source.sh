#!/bin/sh
# Source checks in the spirit of curl's checksrc (style.md §13): every C file opens with a purpose comment,
# no banned function is called, and includes follow the layering (scripts/check_layers.py). Prints each
# offence as file:line and exits 1 when there is any.
set -u
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h')
for f in $files; do
    case "$(head -c 2 "$f")" in
    "/*") ;;
    *) echo "$f:1: the file must open with a purpose comment"; status=1 ;;
    esac
done
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|strtok|strncpy)[[:space:]]*\('
if grep -nE "$banned" $files | grep -vE '\b(snprintf|vsnprintf)\b' | grep -v 'check_source: allow'; then
    echo "banned function (use snprintf, memcpy with lengths, strtol with checks, strtok_r)"
    status=1
fi
# The layering of README "Development -> Layout": which folder may include which.
python3 scripts/check_layers.py || status=1
[ $status -eq 0 ] && echo "check_source: $(echo "$files" | wc -w) files clean"
exit $status
