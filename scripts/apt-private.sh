# Sourced by the scripts that fetch Debian 13 (trixie) packages without
# touching this machine's apt state: an apt configuration of its own in a
# folder, for one architecture.
#
#   . scripts/apt-private.sh
#   apt_private DIR ARCH     # then: apt-get "${apt_opts[@]}" update / download / install --download-only

apt_private() {
    local dir="$1" arch="$2"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/state" "$dir/preferences.d"
    echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        > "$dir/sources.list"
    touch "$dir/state/status"
    apt_opts=(
        -o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::Etc::Preferences=$dir/preferences" -o "Dir::Etc::PreferencesParts=$dir/preferences.d"
        -o "Dir::State=$dir/state" -o "Dir::State::Lists=$dir/lists"
        -o "Dir::State::status=$dir/state/status" -o "Dir::Cache=$dir/cache"
        -o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o "Debug::NoLocking=1"
    )
    apt-get "${apt_opts[@]}" update -qq >&2
}
