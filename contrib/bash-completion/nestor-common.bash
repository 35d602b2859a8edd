# shellcheck shell=bash
# Shared by the bash completions of nestorctl and nestor (issue #16). The
# subcommands and options come from the binary's own --help at the time
# of the TAB, so the completion never lists what the binary would refuse.

# _nestor_help PROG [SUBCOMMAND...]: PROG's help for that subcommand path.
_nestor_help() { "$@" --help 2>/dev/null; }

# _nestor_subcommands PROG [SUBCOMMAND...]: the subcommands one level down.
_nestor_subcommands() {
	_nestor_help "$@" | awk '/^Subcommands:/ { f = 1; next } f && /^  [a-z]/ { print $1 } f && /^$/ { exit }'
}

# _nestor_long_options PROG [SUBCOMMAND...]: the long options there.
_nestor_long_options() { _nestor_help "$@" | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u; }

# _nestor_complete PROG OPTS_WITH_VALUE NAMES_FN: fills COMPREPLY for
# COMP_WORDS/COMP_CWORD. OPTS_WITH_VALUE: global options that take a
# value (skipped when looking for subcommands). NAMES_FN: called with the
# subcommand path to print the names a leaf command takes ("" for none).
_nestor_complete() {
	local prog=$1 valued=$2 names_fn=$3 cur=${COMP_WORDS[COMP_CWORD]} path=() i w subs prev
	prev=${COMP_WORDS[COMP_CWORD - 1]:-}
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ " $valued " == *" $w "* ]]; then
			((i++))
			continue
		fi
		[[ $w == -* ]] && continue
		subs=$(_nestor_subcommands "$prog" "${path[@]}")
		if [[ $'\n'$subs$'\n' == *$'\n'$w$'\n'* ]]; then path+=("$w"); fi
	done
	case $prev in
	--pool | --socket | -s | --journal-dir | --backup | --control)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_nestor_long_options "$prog" "${path[@]}")" -- "$cur")
		return
	fi
	subs=$(_nestor_subcommands "$prog" "${path[@]}")
	if [ -n "$subs" ]; then
		mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
	elif [ -n "$names_fn" ] && [ "${#path[@]}" -gt 0 ]; then
		mapfile -t COMPREPLY < <(compgen -W "$("$names_fn" "$prog" "${path[@]}")" -- "$cur")
	fi
}
