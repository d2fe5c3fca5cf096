#!/usr/bin/env bash
# The Debian packages that `make test` and CI need, by the command each
# provides: the build (make, git, gcc), the node agent's real-kernel tests
# (ip, nft, iptables, conntrack, ping), the lookup page's browser tests
# (chromium) and the IPFIX export's round trip through a real collector
# (nfcapd and nfdump, package nfdump; its service is a no-op until configured),
# and the real nodes (internal/testing/realnode): runc, the CNI plugins
# (bridge and the others in /usr/lib/cni) and nsenter. The one list: `make
# test`, `make run` and .ci/run call this script.
#
# As root it installs what is missing (apt-get update once, then
# apt-get install -y). Otherwise it prints the command to run and which
# suites will skip meanwhile; it never fails `make test` for that, and the
# test run ends by naming every test that skipped.
set -euo pipefail

# command:package, in the order they are listed
deps=(make:make git:git gcc:gcc
  ip:iproute2 nft:nftables iptables:iptables conntrack:conntrack ping:iputils-ping
  chromium:chromium nfcapd:nfdump
  runc:runc /usr/lib/cni/bridge:containernetworking-plugins nsenter:util-linux)

# Look in sbin too: a user's $PATH often lacks it, root's (and the tests') has it.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# chromium: the tests also take chromium-browser, google-chrome or
# $PLANETKUBE_BROWSER (internal/testing/browsertest).
has() {
  if [[ $1 == chromium ]]; then
    [[ -n ${PLANETKUBE_BROWSER:-} ]] && command -v "$PLANETKUBE_BROWSER" >/dev/null 2>&1 && return 0
    command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 && return 0
  fi
  [[ $1 == /* ]] && { [[ -x $1 ]]; return; }
  command -v "$1" >/dev/null 2>&1
}

missing=() need=()
for d in "${deps[@]}"; do
  has "${d%%:*}" || { missing+=("${d%%:*}"); need+=("${d#*:}"); }
done
root=false
[[ $(id -u) == 0 ]] && root=true

if ((${#need[@]})) && $root && command -v apt-get >/dev/null 2>&1; then
  echo ">> Installing the Debian packages the tests need: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
  exit 0
fi

real_kernel="internal/testing/netnstest, internal/agent/capture and test/nodeagent"
real_node="internal/testing/realnode and test/realnode"
browser="internal/testing/browsertest, internal/flow/lookup's page tests and test/nodeagent's page test"
if ((${#need[@]})); then
  echo ">> Missing commands: ${missing[*]}. Install them with:"
  if command -v apt-get >/dev/null 2>&1; then
    echo "     sudo apt-get update && sudo apt-get install -y ${need[*]}"
  else
    echo "     the Debian packages ${need[*]} (or your system's equivalents)"
  fi
  case " ${missing[*]} " in *" ip "* | *" nft "*)
    echo "   Without ip and nft the real-kernel suites skip: $real_kernel." ;;
  esac
  case " ${missing[*]} " in *" chromium "*)
    echo "   Without Chromium the browser tests skip: $browser." ;;
  esac
  case " ${missing[*]} " in *" runc "* | *"/usr/lib/cni/bridge"* | *" nsenter "*)
    echo "   Without runc, the CNI plugins and nsenter there is no real node: $real_node skip, and make run has fake nodes only." ;;
  esac
  case " ${missing[*]} " in *" nfcapd "*)
    echo "   Without nfdump the IPFIX collector round trip skips: internal/agent/ipfix." ;;
  esac
fi
if ! $root; then
  echo ">> Not root: the real-kernel suites skip ($real_kernel need network namespaces,"
  echo "   $real_node a real kubelet);"
  echo "   run \`sudo make test\` to run them. The run ends by naming every test that skipped."
fi
