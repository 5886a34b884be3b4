#!/usr/bin/env bash
# Prepare an NVIDIA Jetson for the jetgen runtime: detect the board and its L4T release, map them to
# JetPack, Python, CUDA and TensorRT (jetson/releases.tsv), then install the apt prerequisites, numpy,
# NVIDIA's onnxruntime-gpu wheel (jetson/wheels.tsv), pycuda and jetgen itself; optionally NVIDIA's
# PyTorch wheel, a swap file and the maximum-performance power mode. Safe to re-run: every step skips
# what is already there. `setup.sh --help` lists the options; jetson/README.md walks through a board.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
RELEASES_TSV="$SCRIPT_DIR/releases.tsv"
WHEELS_TSV="$SCRIPT_DIR/wheels.tsv"
LIBRARIES_TSV="$SCRIPT_DIR/libraries.tsv"
WHEEL_CACHE=${JETGEN_WHEEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/jetgen/wheels}
DPKG_QUERY=${JETGEN_DPKG_QUERY:-dpkg-query}
CUDA_HOME=/usr/local/cuda

# /proc/device-tree/compatible entry (shell glob) -> jetgen target and board name (docs/platform.md).
# The first row matching any entry wins; the SoC rows last catch modules and carriers not listed.
BOARDS='nvidia,p3450-0000	nano	Jetson Nano
nvidia,p2771-0000	tx2	Jetson TX2
nvidia,p2972-0000	xavier	Jetson AGX Xavier
nvidia,p3509-0000+p3668-*	xavier	Jetson Xavier NX
nvidia,p3737-0000+p3701-*	orin	Jetson AGX Orin
nvidia,p3768-0000+p3767-*	orin	Jetson Orin NX/Nano
nvidia,tegra210	nano	Jetson with Tegra X1 (Nano/TX1 class)
nvidia,tegra186	tx2	Jetson with Tegra186 (TX2 class)
nvidia,tegra194	xavier	Jetson with Tegra194 (Xavier class)
nvidia,tegra234	orin	Jetson with Tegra234 (Orin class)'

# Always wanted: pip and headers to build pycuda, curl for the wheels, TensorRT's Python module.
APT_BASE=(python3-pip python3-dev build-essential curl python3-libnvinfer)

usage() {
    cat <<'EOF'
Usage: jetson/setup.sh [options]

Prepare an NVIDIA Jetson (JetPack 4.6 to 6.2.1) for the jetgen runtime: detect the board and the
L4T release, then install the apt prerequisites, numpy, NVIDIA's onnxruntime-gpu wheel, pycuda and
jetgen (no extras: the Jetson wheel replaces PyPI's onnxruntime), check that `import tensorrt` works
and print a summary. Re-running is harmless: each step skips what is already there.

Options:
  --dry-run       print every step and its exact commands without running any of them
  --with-torch    also install NVIDIA's PyTorch wheel for this JetPack and its prerequisites
                  (cuSPARSELt first on JetPack 6; only needed for `jetgen bench` against PyTorch eager)
  --swap SIZE     create, enable and register in /etc/fstab a swap file /mnt/<SIZE>B.swap, e.g.
                  --swap 4G (advised on a 4 GB Nano); skipped if it is already there
  --max-perf      select power mode 0 (`nvpmodel -m 0`, MAXN on Nano, AGX Xavier and AGX Orin)
                  and pin the clocks (`jetson_clocks`), for benchmarks
  --root DIR      read etc/nv_tegra_release, proc/device-tree/compatible and var/lib/dpkg under DIR
                  instead of / (for tests; only together with --dry-run)
  -h, --help      show this help and exit

Detection: L4T comes from the first line of /etc/nv_tegra_release, else from the version of the
nvidia-l4t-core package (dpkg-query --admindir=<root>/var/lib/dpkg); the board from the
NUL-separated /proc/device-tree/compatible. A release not in jetson/releases.tsv but newer than a
known one of the same L4T major (R32, R35, R36) goes on, with a warning, as the nearest known release
below it; other unknown releases are refused with advice for that case.

Environment:
  JETGEN_DPKG_QUERY   command used instead of dpkg-query for the L4T fallback (tests use a stub)
  JETGEN_WHEEL_CACHE  where wheels are downloaded (default ~/.cache/jetgen/wheels)

Python packages go to the user site (pip --user), or into the active virtualenv, or system-wide
when run as root; apt, swap and power-mode steps use sudo when not run as root.
Exit status: 0 on success, 1 on an error (one sentence on stderr), 2 on a usage error.
EOF
}

die() { printf 'Error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'Error: %s\n' "$*" >&2; printf 'Run %s --help for the options.\n' "$0" >&2; exit 2; }
warn() { printf 'Warning: %s\n' "$*" >&2; }
step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Print a command so that it can be pasted into a shell.
show_cmd() {
    local arg out=""
    for arg in "$@"; do
        case "$arg" in
            *[!A-Za-z0-9_@%+=:,./-]* | "") arg="'$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'" ;;
        esac
        out="$out $arg"
    done
    printf '%s\n' "${out# }"
}

# Print a command, then run it unless this is a dry run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '[dry-run] '; show_cmd "$@"
    else
        printf '+ '; show_cmd "$@"
        "$@"
    fi
}

# skip_if WHAT CHECK...: in a real run, succeed (step skipped) when CHECK succeeds; in a dry run, say
# what would be checked and fail, so that the step's commands are printed.
skip_if() {
    local what=$1
    shift
    if [ "$DRY_RUN" = 1 ]; then
        note "(skipped at run time if $what)"
        return 1
    fi
    if "$@" >/dev/null 2>&1; then
        note "already there: $what"
        ALREADY="${ALREADY:+$ALREADY, }$what"
        return 0
    fi
    return 1
}

done_item() { DONE="${DONE:+$DONE, }$*"; }

# ---- options -------------------------------------------------------------------------------------
DRY_RUN=0
WITH_TORCH=0
SWAP_SIZE=""
MAX_PERF=0
ROOT="/"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --with-torch) WITH_TORCH=1 ;;
        --max-perf) MAX_PERF=1 ;;
        --swap) [ $# -ge 2 ] || usage_error "--swap needs a size such as 4G."; SWAP_SIZE=$2; shift ;;
        --swap=*) SWAP_SIZE=${1#--swap=} ;;
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory."; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option '$1'." ;;
    esac
    shift
done
if [ -n "$SWAP_SIZE" ]; then
    case "$SWAP_SIZE" in
        *[!0-9MG]* | [MG]* | *[MG]?* | *[0-9]) usage_error "--swap takes a size in megabytes or gigabytes such as 4G or 2048M, not '$SWAP_SIZE'." ;;
    esac
fi
if [ "$ROOT" != "/" ] && [ "$DRY_RUN" = 0 ]; then
    usage_error "--root is for testing against a copy of a board's files and works only with --dry-run."
fi
[ -d "$ROOT" ] || usage_error "--root '$ROOT' is not a directory."
ROOT=${ROOT%/}

# ---- detection -----------------------------------------------------------------------------------
# L4T from the first line of nv_tegra_release, "# R32 (release), REVISION: 7.1, ..." -> 32.7.1.
l4t_from_release_file() {
    local file="$ROOT/etc/nv_tegra_release" line
    [ -r "$file" ] || return 1
    IFS= read -r line <"$file" || [ -n "$line" ] || return 1
    printf '%s\n' "$line" | sed -n 's/^# R\([0-9][0-9]*\) (release), REVISION: \([0-9][0-9.]*\),.*/\1.\2/p' | grep .
}

# L4T from the nvidia-l4t-core package version, "32.7.1-20220219090432" -> 32.7.1.
l4t_from_dpkg() {
    local version
    # shellcheck disable=SC2016,SC2086  # ${Version} is dpkg's format; the override may carry arguments
    version=$($DPKG_QUERY --admindir="$ROOT/var/lib/dpkg" --showformat='${Version}' --show nvidia-l4t-core 2>/dev/null) || return 1
    version=${version%%-*}
    case "$version" in
        [0-9]*.[0-9]*) printf '%s\n' "$version" ;;
        *) return 1 ;;
    esac
}

# Prints "target<TAB>board name<TAB>matched entry" for the first BOARDS row matching a compatible entry.
detect_board() {
    local file="$ROOT/proc/device-tree/compatible" entries pattern target name entry
    [ -r "$file" ] || return 1
    entries=$(tr '\0' '\n' <"$file")
    while IFS='	' read -r pattern target name; do
        while IFS= read -r entry; do
            # shellcheck disable=SC2254  # the pattern is a glob on purpose
            case "$entry" in
                $pattern) printf '%s\t%s\t%s\n' "$target" "$name" "$entry"; return 0 ;;
            esac
        done <<EOF
$entries
EOF
    done <<EOF
$BOARDS
EOF
    return 1
}

# Prints the first data row of a TSV file whose first column is $2 and, if given, second is $3.
tsv_row() {
    awk -F'\t' -v a="$2" -v b="${3:-}" '!/^#/ && $1 == a && (b == "" || $2 == b) { print; exit }' "$1"
}

if L4T=$(l4t_from_release_file); then
    L4T_SOURCE="etc/nv_tegra_release"
elif L4T=$(l4t_from_dpkg); then
    L4T_SOURCE="package nvidia-l4t-core"
elif [ -e "$ROOT/etc/nv_tegra_release" ]; then
    die "cannot read the L4T release from the first line of $ROOT/etc/nv_tegra_release (expected '# R32 (release), REVISION: 7.1, ...') and the nvidia-l4t-core package is not installed; reflash the board with JetPack."
else
    die "this does not look like a Jetson: there is no $ROOT/etc/nv_tegra_release and no nvidia-l4t-core package; run this script on a Jetson flashed with JetPack 4.6 or newer."
fi

# version_le A B: A <= B as version numbers (32.7.1 < 32.7.10 < 35.2.1).
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }

# The known L4T releases, oldest first; with an argument, only those of that major.
known_releases() {
    awk -F'\t' -v m="${1:-}" '!/^#/ && NF > 1 { split($1, p, "."); if (m == "" || p[1] == m) print $1 }' "$RELEASES_TSV" | sort -V
}

# Release policy (see jetson/releases.tsv): an exact row; else the nearest known row below a later
# point release of a known major, with a warning; else a refusal whose advice fits the case.
RELEASE_ROW=$(tsv_row "$RELEASES_TSV" "$L4T")
L4T_ROW=$L4T
if [ -z "$RELEASE_ROW" ]; then
    MAJOR=${L4T%%.*}
    NEAREST=""
    for known in $(known_releases "$MAJOR"); do
        if version_le "$known" "$L4T"; then NEAREST=$known; fi
    done
    SUPPORTED=$(known_releases | awk '{ printf "%sR%s", sep, $1; sep = ", " }')
    NEWEST=$(known_releases | tail -n 1)
    NEWEST_JP=$(tsv_row "$RELEASES_TSV" "$NEWEST" | cut -f2)
    if [ -n "$NEAREST" ]; then
        RELEASE_ROW=$(tsv_row "$RELEASES_TSV" "$NEAREST")
        L4T_ROW=$NEAREST
        warn "L4T R$L4T (from $L4T_SOURCE) is not in jetson/releases.tsv; it is a later point release of R$MAJOR, so setup goes on as for the nearest known release, R$NEAREST (JetPack $(printf '%s' "$RELEASE_ROW" | cut -f2)). If a step fails, or once it works, add a checked row for R$L4T to jetson/releases.tsv."
    elif [ -n "$(known_releases "$MAJOR")" ]; then
        OLDEST_MAJOR=$(known_releases "$MAJOR" | head -n 1)
        NEWEST_MAJOR=$(known_releases "$MAJOR" | tail -n 1)
        die "L4T R$L4T (from $L4T_SOURCE) is not a release jetgen supports (supported: $SUPPORTED): it is older than R$OLDEST_MAJOR, the first R$MAJOR release jetgen knows; upgrade the board to JetPack $(tsv_row "$RELEASES_TSV" "$NEWEST_MAJOR" | cut -f2) (L4T R$NEWEST_MAJOR), the newest of R$MAJOR."
    elif version_le "$NEWEST" "$L4T"; then
        die "L4T R$L4T (from $L4T_SOURCE) is not a release jetgen supports (supported: $SUPPORTED): it is a newer major release than R$NEWEST (JetPack $NEWEST_JP), with its own Ubuntu, Python, CUDA and TensorRT, so setup stops instead of guessing; add checked rows for it to jetson/releases.tsv and jetson/wheels.tsv, or flash JetPack $NEWEST_JP."
    else
        die "L4T R$L4T (from $L4T_SOURCE) is not a release jetgen supports (supported: $SUPPORTED); flash JetPack 4.6 or newer (Nano and TX2 stop at 4.6.x, Xavier at 5.1.x; Orin runs 6.x)."
    fi
fi
IFS='	' read -r _ JETPACK UBUNTU PYTHON CUDA TENSORRT RELEASE_BOARDS PYCUDA_REQ NUMPY_REQ PIP_REQ <<EOF
$RELEASE_ROW
EOF

if BOARD_ROW=$(detect_board); then
    IFS='	' read -r TARGET BOARD COMPATIBLE <<EOF
$BOARD_ROW
EOF
    BOARD_DESC="$BOARD ($COMPATIBLE)"
    case ",$RELEASE_BOARDS," in
        *",$TARGET,"*) ;;
        *) warn "releases.tsv lists JetPack $JETPACK for $RELEASE_BOARDS boards, not for the detected $BOARD; continuing." ;;
    esac
else
    TARGET=unknown
    BOARD_DESC="unknown board"
    warn "could not identify the board from $ROOT/proc/device-tree/compatible; continuing with the L4T release alone."
fi

CP_TAG="cp${PYTHON/./}"
SUDO=()
PIP=(python3 -m pip)
PIP_INSTALL=(python3 -m pip install)
if [ "$(id -u)" != 0 ]; then
    SUDO=(sudo)
    if [ -z "${VIRTUAL_ENV:-}" ]; then PIP_INSTALL+=(--user); fi
fi
DONE=""
ALREADY=""

echo "jetgen Jetson setup$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing is changed)')"
note "board:    $BOARD_DESC"
note "L4T:      $L4T (from $L4T_SOURCE)$([ "$L4T_ROW" != "$L4T" ] && echo ", set up as R$L4T_ROW")"
note "JetPack:  $JETPACK (Ubuntu $UBUNTU, Python $PYTHON, CUDA $CUDA, TensorRT $TENSORRT)"

# ---- steps ---------------------------------------------------------------------------------------
python_is_release_python() {
    [ "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$PYTHON" ]
}

dpkg_installed() {
    # shellcheck disable=SC2016  # ${Status} is dpkg's format
    dpkg-query --showformat='${Status}' --show "$1" 2>/dev/null | grep -q 'install ok installed'
}

pip_has_version() {
    "${PIP[@]}" show "$1" 2>/dev/null | grep -q "^Version: $2\(+.*\)\{0,1\}\$"
}

# apt_install LABEL PKG...: installs the packages that are missing (all of them in a dry run).
apt_install() {
    local label=$1 pkg missing=()
    shift
    if [ "$DRY_RUN" = 1 ]; then
        note "(packages already installed are left out at run time)"
        missing=("$@")
    else
        for pkg in "$@"; do
            dpkg_installed "$pkg" || missing+=("$pkg")
        done
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        note "already there: $*"
        ALREADY="${ALREADY:+$ALREADY, }$label"
        return 0
    fi
    run "${SUDO[@]}" apt-get update
    run "${SUDO[@]}" apt-get install -y "${missing[@]}"
    done_item "$label"
}

# install_wheel PACKAGE: downloads this JetPack's wheel for PACKAGE to its real file name and installs it.
install_wheel() {
    local package=$1 row version filename url sha status apt pip wheel_note dest list
    row=$(tsv_row "$WHEELS_TSV" "$JETPACK" "$package")
    [ -n "$row" ] || die "jetson/wheels.tsv has no $package wheel for JetPack $JETPACK; add a row with the NVIDIA wheel for it."
    IFS='	' read -r _ _ version filename url sha status apt pip wheel_note <<EOF
$row
EOF
    case "$filename" in
        *-"$CP_TAG"-*) ;;
        *) die "jetson/wheels.tsv gives $filename for JetPack $JETPACK, which is not a $CP_TAG wheel for Python $PYTHON; fix that row." ;;
    esac
    step "$package $version for JetPack $JETPACK ($filename)"
    if [ "$status" != confirmed ]; then
        warn "the $package wheel for JetPack $JETPACK is $status in jetson/wheels.tsv ($wheel_note); if it fails to install or import, find the right one on the Jetson Zoo (elinux.org/Jetson_Zoo) and fix that row."
    fi
    if [ "$apt" != "-" ]; then
        IFS=, read -r -a list <<<"$apt"
        apt_install "$package prerequisites (apt)" "${list[@]}"
    fi
    if [ "$pip" != "-" ]; then
        IFS=, read -r -a list <<<"$pip"
        run "${PIP_INSTALL[@]}" "${list[@]}"
        done_item "$pip"
    fi
    if skip_if "$package $version is installed" pip_has_version "$package" "$version"; then
        return 0
    fi
    dest="$WHEEL_CACHE/$filename"
    if [ "$DRY_RUN" = 1 ] || [ ! -s "$dest" ]; then
        run mkdir -p "$WHEEL_CACHE"
        run curl -fL --retry 3 -o "$dest.part" "$url"
        run mv "$dest.part" "$dest"
    else
        note "already downloaded: $dest"
    fi
    if [ "$sha" != "-" ]; then
        run sh -c "echo \"$sha  $dest\" | sha256sum -c -" ||
            { rm -f "$dest"; die "$dest does not have the sha256 jetson/wheels.tsv expects; it was removed, so re-run to download it again, or fix the row if the wheel moved."; }
    fi
    run "${PIP_INSTALL[@]}" "$dest"
    done_item "$package $version ($CP_TAG)"
}

# install_libraries PACKAGE: the libraries jetson/libraries.tsv lists for PACKAGE on this JetPack, each
# unpacked into CUDA's include and lib64 directories unless its check file is already there.
install_libraries() {
    local package=$1 library check url sha status lib_note archive dir
    while IFS='	' read -r _ library _ check url sha status lib_note; do
        [ -n "$library" ] || continue
        step "$library for $package (JetPack $JETPACK needs it before the $package wheel)"
        if [ "$status" != confirmed ]; then
            warn "the $library archive for JetPack $JETPACK is $status in jetson/libraries.tsv ($lib_note); if $package fails to import for a missing libcusparseLt, install it as NVIDIA's PyTorch for Jetson guide says and fix that row."
        fi
        if skip_if "$CUDA_HOME/$check exists" test -e "$CUDA_HOME/$check"; then
            continue
        fi
        archive="$WHEEL_CACHE/${url##*/}"
        dir="$WHEEL_CACHE/$(basename "$archive" .tar.xz)"
        run mkdir -p "$WHEEL_CACHE"
        run curl -fL --retry 3 -o "$archive.part" "$url"
        run mv "$archive.part" "$archive"
        if [ "$sha" != "-" ]; then
            run sh -c "echo \"$sha  $archive\" | sha256sum -c -" ||
                { rm -f "$archive"; die "$archive does not have the sha256 jetson/libraries.tsv expects; it was removed, so re-run to download it again, or fix the row."; }
        fi
        run tar -xf "$archive" -C "$WHEEL_CACHE"
        run "${SUDO[@]}" sh -c "cp -a \"$dir\"/include/* $CUDA_HOME/include/ && cp -a \"$dir\"/lib/* $CUDA_HOME/lib64/"
        run "${SUDO[@]}" ldconfig
        done_item "$library"
    done <<EOF
$(awk -F'\t' -v a="$JETPACK" -v b="$package" '!/^#/ && $1 == a && $3 == b' "$LIBRARIES_TSV")
EOF
}

step "Python $PYTHON"
if [ "$DRY_RUN" = 1 ]; then
    note "(at run time: stop unless python3 is Python $PYTHON, the interpreter the wheels are built for)"
elif ! python_is_release_python; then
    die "python3 here is Python $(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'), but JetPack $JETPACK ships Python $PYTHON and its NVIDIA wheels need it; run the script with the system python3 (deactivate other environments)."
fi

if [ -n "$SWAP_SIZE" ]; then
    SWAP_FILE="/mnt/${SWAP_SIZE}B.swap"
    FSTAB_LINE="$SWAP_FILE none swap sw 0 0"
    step "swap file $SWAP_FILE"
    if [ "$TARGET" != nano ]; then
        note "(swap mostly matters on the 4 GB Nano; creating it anyway as asked)"
    fi
    swap_active() { swapon --show=NAME --noheadings | grep -qxF "$SWAP_FILE"; }
    in_fstab() { grep -qF "$FSTAB_LINE" /etc/fstab; }
    if ! skip_if "$SWAP_FILE exists" test -e "$SWAP_FILE"; then
        run "${SUDO[@]}" fallocate -l "$SWAP_SIZE" "$SWAP_FILE"
        run "${SUDO[@]}" chmod 600 "$SWAP_FILE"
        run "${SUDO[@]}" mkswap "$SWAP_FILE"
    fi
    if ! skip_if "$SWAP_FILE is in use" swap_active; then
        run "${SUDO[@]}" swapon "$SWAP_FILE"
    fi
    if ! skip_if "/etc/fstab has the swap line" in_fstab; then
        run "${SUDO[@]}" sh -c "echo \"$FSTAB_LINE\" >> /etc/fstab"
    fi
    done_item "swap $SWAP_SIZE"
fi

step "apt prerequisites"
apt_install "apt prerequisites" "${APT_BASE[@]}"

if [ "$PIP_REQ" != "-" ]; then
    step "pip ($PIP_REQ: the system pip cannot read current wheels)"
    run "${PIP_INSTALL[@]}" --upgrade "$PIP_REQ"
    done_item "$PIP_REQ"
fi

step "numpy ($NUMPY_REQ)"
run "${PIP_INSTALL[@]}" "$NUMPY_REQ"
done_item "$NUMPY_REQ"

step "onnxruntime: NVIDIA's onnxruntime-gpu replaces PyPI's CPU-only onnxruntime"
if ! skip_if "no CPU-only onnxruntime is installed" sh -c "! ${PIP[*]} show onnxruntime"; then
    run "${PIP[@]}" uninstall -y onnxruntime
fi
install_wheel onnxruntime-gpu

step "pycuda ($PYCUDA_REQ, built against CUDA $CUDA)"
if ! skip_if "pycuda imports" python3 -c 'import pycuda'; then
    # Printed literally: the build sees CUDA's compiler, headers and libraries.
    # shellcheck disable=SC2016
    printf '%s export PATH=%s/bin:$PATH CPATH=%s/include LIBRARY_PATH=%s/lib64\n' \
        "$([ "$DRY_RUN" = 1 ] && echo '[dry-run]' || echo '+')" "$CUDA_HOME" "$CUDA_HOME" "$CUDA_HOME"
    export PATH="$CUDA_HOME/bin:$PATH" CPATH="$CUDA_HOME/include" LIBRARY_PATH="$CUDA_HOME/lib64"
    run "${PIP_INSTALL[@]}" "$PYCUDA_REQ"
    done_item "$PYCUDA_REQ"
fi

step "jetgen from $REPO_DIR (no extras: onnxruntime-gpu above is its ort backend)"
run "${PIP_INSTALL[@]}" --upgrade "$REPO_DIR"
done_item "jetgen"

if [ "$WITH_TORCH" = 1 ]; then
    install_libraries torch
    install_wheel torch
fi

if [ "$MAX_PERF" = 1 ]; then
    step "maximum performance: power mode 0 and fixed clocks"
    mode_is_0() { nvpmodel -q 2>/dev/null | tail -n 1 | grep -qx 0; }
    if ! skip_if "power mode 0 is selected" mode_is_0; then
        run "${SUDO[@]}" nvpmodel -m 0
    fi
    run "${SUDO[@]}" jetson_clocks
    done_item "nvpmodel -m 0 + jetson_clocks"
fi

step "checks"
TRT_CHECK='import tensorrt; print("ok, " + tensorrt.__version__)'
ORT_CHECK='import onnxruntime; print("ok, " + ", ".join(onnxruntime.get_available_providers()))'
TRT_STATUS="not checked (dry run)"
ORT_STATUS="not checked (dry run)"
CHECK_FAILED=0
if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] '; show_cmd python3 -c "$TRT_CHECK"
    printf '[dry-run] '; show_cmd python3 -c "$ORT_CHECK"
else
    printf '+ '; show_cmd python3 -c "$TRT_CHECK"
    if ! TRT_STATUS=$(python3 -c "$TRT_CHECK" 2>&1); then
        TRT_STATUS="FAILED: $(printf '%s' "$TRT_STATUS" | tail -n 1) (install the apt package python3-libnvinfer)"
        CHECK_FAILED=1
    fi
    printf '+ '; show_cmd python3 -c "$ORT_CHECK"
    if ! ORT_STATUS=$(python3 -c "$ORT_CHECK" 2>&1); then
        ORT_STATUS="FAILED: $(printf '%s' "$ORT_STATUS" | tail -n 1)"
        CHECK_FAILED=1
    fi
fi

echo
if [ "$DRY_RUN" = 1 ]; then echo "Summary (dry run: nothing was changed)"; else echo "Summary"; fi
note "board:     $BOARD_DESC"
note "L4T:       $L4T$([ "$L4T_ROW" != "$L4T" ] && echo " (not in releases.tsv: set up as R$L4T_ROW)")"
note "JetPack:   $JETPACK"
note "Python:    $PYTHON"
note "CUDA:      $CUDA"
note "TensorRT:  $TENSORRT"
if [ "$DRY_RUN" = 1 ]; then
    note "planned:   ${DONE:-nothing}"
else
    note "installed: ${DONE:-nothing}"
    note "already:   ${ALREADY:-nothing}"
fi
note "tensorrt:  $TRT_STATUS"
note "onnxruntime: $ORT_STATUS"
if [ "$CHECK_FAILED" = 1 ]; then
    die "setup finished but a check failed (see the summary above); fix it and re-run this script."
fi
