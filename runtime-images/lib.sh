# Shared by the runtime images' build scripts (sourced, POSIX sh). An image root is assembled
# from files of the host's Debian packages: each binary is copied with the shared libraries ldd
# names for it, at the same paths, so the image needs no package manager and holds nothing else.

# The directory layout every image has: the mount points the shim needs (/proc, /dev, /tmp,
# /var/task), the host's merged-/usr symlinks, and the few /etc files programs look up.
img_skeleton() {
  root=$1
  mkdir -p "$root/usr/bin" "$root/usr/lib" "$root/etc" "$root/proc" "$root/dev" \
    "$root/var/task" "$root/ignis" "$root/opt"
  mkdir -p -m 1777 "$root/tmp"
  for d in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$d" ]; then
      # Relative, so the link never points at the host's tree while the image is built.
      target=$(readlink "/$d")
      ln -sfn "${target#/}" "$root/$d"
      mkdir -p "$root/${target#/}"
    fi
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  : >"$root/etc/resolv.conf"
  # CA certificates, so a function can reach HTTPS endpoints where the host lets it (and Debian's
  # node, built to read them, does not warn at every start).
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
}

# Copies one host file to the same path under root (symlinks in the path resolved as on the
# host, the file's own content dereferenced).
img_file() {
  root=$1
  src=$2
  dest="$root$src"
  [ -e "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  cp -L --preserve=mode "$src" "$dest"
}

# Copies binaries (executables or shared objects) and every library ldd resolves for them.
img_bin() {
  root=$1
  shift
  for bin in "$@"; do
    [ -e "$bin" ] || { echo "build-images: $bin is missing on this host" >&2; return 1; }
    img_file "$root" "$bin"
    img_libs "$root" "$bin"
  done
}

# Installs a binary built here (by meson) as /ignis/bootstrap, with its libraries.
img_bootstrap() {
  root=$1
  bin=$2
  [ -x "$bin" ] || { echo "build-images: $bin is not built (run scripts/build)" >&2; return 1; }
  cp "$bin" "$root/ignis/bootstrap"
  chmod 0755 "$root/ignis/bootstrap"
  img_libs "$root" "$bin"
}

# Copies the shared libraries ldd resolves for the given binaries (not the binaries). A library
# ldd cannot find fails the build: an image missing one would fail only when a function runs.
img_libs() {
  root=$1
  shift
  for bin in "$@"; do
    deps=$(ldd "$bin" 2>/dev/null) || continue # not dynamic (a script, a static binary)
    if echo "$deps" | grep -q 'not found'; then
      echo "build-images: $bin needs libraries this host lacks:" >&2
      echo "$deps" | grep 'not found' >&2
      return 1
    fi
    # "libx.so.1 => /lib/.../libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
    echo "$deps" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
      while read -r lib; do
        img_file "$root" "$lib"
      done
  done
}

# A symlink inside the image (target as given, relative or absolute inside the image).
img_link() {
  root=$1
  target=$2
  name=$3
  mkdir -p "$(dirname "$root$name")"
  ln -sfn "$target" "$root$name"
}

# The files of a Debian package that match a pattern (grep -E), e.g. '^/(usr/)?bin/'.
img_pkg_files() {
  dpkg -L "$1" 2>/dev/null | grep -E "$2" | while read -r f; do
    [ -f "$f" ] && [ ! -L "$f" ] && echo "$f"
  done
  return 0
}
