// edgeagent path prefilter: an eCAP adapter that tells Squid, in process, which requests
// cannot be listed, so only the rest pay for an external-ACL round trip to
// edgeagent-squid-helper (the one place that canonicalises URLs and decides).
//
// Squid asks wantsUrl(path) for every request (path = path and query as received). This
// adapter answers "false" (no adaptation: nothing else happens) when the path filter
// written by the agent proves no url/url-prefix entry can match, and "true" otherwise;
// the transaction it then gets is passed through untouched, and squid.conf's
// `adaptation_service` ACL sends exactly those requests to the helper. The filter format
// and the key derivation are specified in edgeagent/proxy/pathfilter.py; this file
// implements request_paths() and probe_keys() from there byte for byte
// (tests/unit/test_pathfilter.py compares the two on a corpus through probe-main).
//
// Failure handling: no filter loaded (missing, unreadable, bad checksum), or a filter
// whose policy version is not the index's (option index=) -> "true" for every request,
// i.e. the helper sees everything, as without this adapter. A bad new file
// keeps the last good one. The file is looked at every 250 ms (stat only) and read
// into memory whole (8 bytes per url/url-prefix entry).
// Never throws into Squid: every failure degrades to "ask the helper".

#include <libecap/common/autoconf.h>
#include <libecap/common/registry.h>
#include <libecap/common/errors.h>
#include <libecap/common/message.h>
#include <libecap/common/name.h>
#include <libecap/common/named_values.h>
#include <libecap/common/options.h>
#include <libecap/adapter/service.h>
#include <libecap/adapter/xaction.h>
#include <libecap/host/host.h>
#include <libecap/host/xaction.h>

#include <openssl/sha.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// Keys are the first 8 digest bytes read as a little-endian u64, on both sides and in the
// file; a big-endian build would need byte swaps.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian hosts only");

namespace edgeagent {

static const char kMagic[8] = {'E', 'A', 'P', 'X', 'P', 'T', 'H', '1'};
static const uint32_t kVersion = 2;
static const uint32_t kFlagMatchAll = 1;
static const size_t kHeaderSize = 8 + 4 + 4 + 8 + 8 + 32;
static const int kMaxPrefixProbes = 32;
static const long kCheckIntervalNs = 250L * 1000 * 1000;

// ------------------------------------------------------------------ key derivation

static inline int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-unescape to the fixed point in one pass (canon._unescape_linear).
static std::string unescapeUntilStable(const std::string &raw) {
    std::string out;
    out.reserve(raw.size());
    for (unsigned char b : raw) {
        out.push_back(static_cast<char>(b));
        while (out.size() >= 3 && out[out.size() - 3] == '%') {
            const int hi = hexval(static_cast<unsigned char>(out[out.size() - 2]));
            const int lo = hexval(static_cast<unsigned char>(out[out.size() - 1]));
            if (hi < 0 || lo < 0) break;
            out.resize(out.size() - 3);
            out.push_back(static_cast<char>(hi * 16 + lo));
        }
    }
    return out;
}

// Resolve "." and "..", then collapse runs of "/" (canon._resolve_path).
static std::string resolvePath(const std::string &path) {
    if (path.find("/.") == std::string::npos && path.find("//") == std::string::npos)
        return path;
    std::vector<std::string> segments;
    size_t start = 1;  // path starts with "/"
    while (true) {
        const size_t slash = path.find('/', start);
        if (slash == std::string::npos) {
            segments.push_back(path.substr(start));
            break;
        }
        segments.push_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    std::vector<std::string> out;
    for (const std::string &seg : segments) {
        if (seg == ".") continue;
        if (seg == "..") {
            if (!out.empty()) out.pop_back();
            continue;
        }
        out.push_back(seg);
    }
    std::string result;
    for (const std::string &seg : out) {
        if (seg.empty()) continue;
        result += '/';
        result += seg;
    }
    if (result.empty()) return "/";
    const std::string &last = segments.back();
    if (last.empty() || last == "." || last == "..") result += '/';
    return result;
}

// Each "/" segment cut at its first ";" (canon.strip_path_params).
static std::string stripPathParams(const std::string &path) {
    std::string out;
    out.reserve(path.size());
    bool inParams = false;
    for (char c : path) {
        if (c == '/') inParams = false;
        else if (c == ';') inParams = true;
        if (!inParams) out.push_back(c);
    }
    return out;
}

// Unescaped, resolved paths of the readings of a raw request path, first the path itself,
// no duplicates; false: not judged (pathfilter.request_paths).
static bool requestPaths(const std::string &raw, std::vector<std::string> &paths) {
    if (raw.empty() || raw[0] != '/') return false;
    for (unsigned char b : raw)
        if (b < 0x21 || b > 0x7e) return false;
    std::string heads[4];  // at most: the path, cut at "#", and both without parameters
    size_t n = 0;
    std::string &head = heads[n++];
    head = raw.find('%') != std::string::npos ? unescapeUntilStable(raw) : raw;
    const size_t q = head.find('?');
    if (q != std::string::npos) head.resize(q);  // the query is in no key
    std::replace(head.begin(), head.end(), '\\', '/');
    const size_t cut = head.find('#');
    if (cut != std::string::npos) heads[n++] = head.substr(0, cut);
    for (size_t i = 0, m = n; i < m; ++i)
        if (heads[i].find(';') != std::string::npos) heads[n++] = stripPathParams(heads[i]);
    paths.clear();
    for (size_t i = 0; i < n; ++i) {
        std::string path = resolvePath(heads[i]);
        if (std::find(paths.begin(), paths.end(), path) == paths.end())
            paths.push_back(std::move(path));
    }
    return true;
}

static inline uint64_t keyOf(SHA256_CTX ctx) {  // by value: finalising a copy
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, &ctx);
    uint64_t key;
    std::memcpy(&key, digest, sizeof key);  // little-endian hosts (x86, arm64)
    return key;
}

// Keys of one path: url, then every "/" boundary and the whole path as prefixes.
static void pathKeys(const std::string &path, std::vector<uint64_t> &keys) {
    SHA256_CTX url;
    SHA256_Init(&url);
    SHA256_Update(&url, "u\0", 2);
    SHA256_Update(&url, path.data(), path.size());
    keys.push_back(keyOf(url));
    SHA256_CTX prefix;
    SHA256_Init(&prefix);
    SHA256_Update(&prefix, "p\0", 2);
    size_t hashed = 0;  // bytes of path already fed to `prefix`
    size_t pos = 0;
    for (int i = 0; i < kMaxPrefixProbes; ++i) {
        pos = path.find('/', pos + 1);
        if (pos == std::string::npos) {
            size_t end = path.find_last_not_of('/');
            if (end != std::string::npos && end + 1 >= hashed) {
                SHA256_Update(&prefix, path.data() + hashed, end + 1 - hashed);
                keys.push_back(keyOf(prefix));
            }
            break;
        }
        SHA256_Update(&prefix, path.data() + hashed, pos - hashed);
        hashed = pos;
        keys.push_back(keyOf(prefix));
    }
}

// Probe keys of a raw request path, per reading; false: not judged (pathfilter.probe_keys).
static bool probeKeys(const std::string &raw, std::vector<uint64_t> &keys,
                      std::vector<std::string> &paths) {
    if (!requestPaths(raw, paths)) return false;
    keys.clear();
    for (const std::string &path : paths) pathKeys(path, keys);
    return true;
}

// ------------------------------------------------------------------ the filter file

class Filter {
  public:
    // Read and verify `path`; nullptr (and `why`) when unusable. The keys are copied, not
    // mapped: a file rewritten in place (not renamed) must not change or crash a loaded
    // filter (a shrunk mapping raises SIGBUS).
    static std::shared_ptr<const Filter> open(const std::string &path, std::string &why) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            why = std::string("cannot open: ") + std::strerror(errno);
            return nullptr;
        }
        struct stat st;
        std::string data;
        bool ok = fstat(fd, &st) == 0;
        if (ok) {
            data.resize(static_cast<size_t>(st.st_size));
            size_t got = 0;
            while (ok && got < data.size()) {
                const ssize_t n = read(fd, &data[got], data.size() - got);
                if (n <= 0) ok = false;
                else got += static_cast<size_t>(n);
            }
        }
        close(fd);
        if (!ok) {
            why = "cannot read";
            return nullptr;
        }
        if (data.size() < kHeaderSize) {
            why = "truncated header";
            return nullptr;
        }
        const unsigned char *p = reinterpret_cast<const unsigned char *>(data.data());
        uint32_t version, flags;
        uint64_t count;
        std::memcpy(&version, p + 8, 4);
        std::memcpy(&flags, p + 12, 4);
        std::memcpy(&count, p + 16, 8);
        if (std::memcmp(p, kMagic, 8) != 0) {
            why = "not a path filter (bad magic)";
            return nullptr;
        }
        if (version != kVersion) {
            why = "unsupported filter version";
            return nullptr;
        }
        if (count > (data.size() - kHeaderSize) / 8 || data.size() != kHeaderSize + 8 * count) {
            why = "size does not match header";
            return nullptr;
        }
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256(p + kHeaderSize, data.size() - kHeaderSize, digest);
        if (std::memcmp(digest, p + 32, 32) != 0) {
            why = "checksum mismatch";
            return nullptr;
        }
        std::shared_ptr<Filter> f(new Filter);
        f->keys_.resize(static_cast<size_t>(count));
        if (count) std::memcpy(f->keys_.data(), p + kHeaderSize, 8 * count);
        f->matchAll_ = flags & kFlagMatchAll;
        std::memcpy(&f->policyVersion_, p + 24, 8);
        f->ino_ = st.st_ino;
        f->fsize_ = st.st_size;
        f->mtime_ = st.st_mtim;
        return f;
    }

    bool contains(uint64_t key) const {
        return std::binary_search(keys_.begin(), keys_.end(), key);
    }
    bool matchAll() const { return matchAll_; }
    uint64_t policyVersion() const { return policyVersion_; }
    size_t count() const { return keys_.size(); }
    bool same(const struct stat &st) const {
        return st.st_ino == ino_ && st.st_size == fsize_ &&
               st.st_mtim.tv_sec == mtime_.tv_sec && st.st_mtim.tv_nsec == mtime_.tv_nsec;
    }

  private:
    Filter() = default;
    std::vector<uint64_t> keys_;  // sorted (the writer sorts; binary_search needs it)
    bool matchAll_ = false;
    uint64_t policyVersion_ = 0;
    ino_t ino_ = 0;
    off_t fsize_ = 0;
    timespec mtime_{};
};

// The decision, independent of eCAP (probe-main and the service use it).
class Prefilter {
  public:
    // `index`: the helper's index; when given, the filter is only used while both carry
    // the same policy version (a filter older than the index could hide a new entry).
    explicit Prefilter(std::string path = std::string(), std::string index = std::string())
        : path_(std::move(path)), indexPath_(std::move(index)) {}

    void setPaths(const std::string &path, const std::string &index) {
        path_ = path;
        indexPath_ = index;
        current_.reset();
        nextCheckNs_ = 0;
        badSet_ = false;
        indexIdent_ = {};
        indexVersion_ = -1;
    }

    // True: the request may be listed, ask the helper.
    bool wants(const std::string &raw) {
        maybeReload();
        if (!current_ || current_->matchAll() || !inStep_) return true;
        // Squid asks twice per request (candidate check, then the service plan): answer
        // the repeat from memory. A reload resets the memory (current_ changes).
        if (memoFilter_ == current_.get() && raw == memoRaw_) return memoAnswer_;
        bool answer = true;
        if (probeKeys(raw, scratch_, paths_)) {
            answer = false;
            for (uint64_t k : scratch_)
                if (current_->contains(k)) {
                    answer = true;
                    break;
                }
        }
        memoFilter_ = current_.get();
        memoRaw_ = raw;
        memoAnswer_ = answer;
        return answer;
    }

    // Messages for the host's log (never a URL): set when the filter changes.
    std::string takeNote() {
        std::string n;
        n.swap(note_);
        return n;
    }

  private:
    static long nowNs() {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return ts.tv_sec * 1000000000L + ts.tv_nsec;
    }

    static bool sameFile(const struct stat &a, const struct stat &b) {
        return a.st_ino == b.st_ino && a.st_size == b.st_size &&
               a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
    }

    // Policy version in the index header (magic "EAPXIDX1", u64 at offset 24), or -1.
    static int64_t indexVersion(const std::string &path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -1;
        unsigned char head[32];
        const ssize_t n = read(fd, head, sizeof head);
        close(fd);
        if (n != static_cast<ssize_t>(sizeof head) || std::memcmp(head, "EAPXIDX1", 8) != 0)
            return -1;
        uint64_t version;
        std::memcpy(&version, head + 24, 8);
        return static_cast<int64_t>(version);
    }

    void maybeReload() {
        const long now = nowNs();
        if (now < nextCheckNs_) return;
        nextCheckNs_ = now + kCheckIntervalNs;
        reloadFilter();
        if (!indexPath_.empty()) {
            struct stat ist;
            if (stat(indexPath_.c_str(), &ist) != 0) {
                indexVersion_ = -1;
                indexIdent_ = {};
            } else if (!sameFile(ist, indexIdent_)) {
                indexIdent_ = ist;
                indexVersion_ = indexVersion(indexPath_);
            }
        }
        const bool inStep = indexPath_.empty() ||
                            (current_ && static_cast<int64_t>(current_->policyVersion()) ==
                                             indexVersion_);
        if (current_ && !indexPath_.empty() && inStep != inStep_) {
            note_ += (note_.empty() ? "" : "; ");
            note_ += inStep ? "path filter in step with the index (policy version " +
                                  std::to_string(current_->policyVersion()) + ")"
                            : "path filter (policy version " +
                                  std::to_string(current_->policyVersion()) +
                                  ") does not match the index (" +
                                  std::to_string(indexVersion_) +
                                  "): every request goes to the helper";
        }
        inStep_ = inStep;
    }

    void reloadFilter() {
        struct stat st;
        if (path_.empty() || stat(path_.c_str(), &st) != 0) return;  // keep what we have
        if (current_ && current_->same(st)) return;
        if (badSet_ && sameFile(st, bad_)) return;  // already refused this exact file
        std::string why;
        std::shared_ptr<const Filter> f = Filter::open(path_, why);
        if (!f) {
            bad_ = st;
            badSet_ = true;
            note_ = "path filter refused (" + why + "); keeping the last good one";
            return;
        }
        badSet_ = false;
        current_ = f;
        memoFilter_ = nullptr;
        note_ = "path filter loaded: " + std::to_string(f->count()) + " keys" +
                (f->matchAll() ? " (match all)" : "");
    }

    std::string path_;
    std::string indexPath_;
    struct stat indexIdent_{};
    int64_t indexVersion_ = -1;
    bool inStep_ = false;
    std::shared_ptr<const Filter> current_;
    long nextCheckNs_ = 0;
    struct stat bad_{};
    bool badSet_ = false;
    std::vector<uint64_t> scratch_;
    std::vector<std::string> paths_;
    std::string note_;
    const Filter *memoFilter_ = nullptr;
    std::string memoRaw_;
    bool memoAnswer_ = false;
};

}  // namespace edgeagent

#ifndef EDGEAGENT_PROBE_MAIN
// ------------------------------------------------------------------ eCAP glue

namespace {

class Service : public libecap::adapter::Service {
  public:
    std::string uri() const override { return "ecap://edgeagent.test/prefilter"; }
    std::string tag() const override { return "1"; }
    void describe(std::ostream &os) const override { os << "edgeagent path prefilter"; }
    void configure(const libecap::Options &cfg) override {
        const libecap::Area path = cfg.option(libecap::Name("filter"));
        const libecap::Area index = cfg.option(libecap::Name("index"));
        prefilter_.setPaths(path.toString(), index.toString());
    }
    void reconfigure(const libecap::Options &cfg) override { configure(cfg); }
    bool wantsUrl(const char *url) const override {
        const bool wants = prefilter_.wants(url ? std::string(url) : std::string());
        const std::string note = prefilter_.takeNote();
        if (!note.empty()) log(note);
        return wants;
    }
    MadeXactionPointer makeXaction(libecap::host::Xaction *hostx) override;

  private:
    static void log(const std::string &text) {
        std::ostream *os = libecap::MyHost().openDebug(
            libecap::LogVerbosity(libecap::ilCritical | libecap::flApplication));
        if (os) {
            *os << "edgeagent prefilter: " << text;
            libecap::MyHost().closeDebug(os);
        }
    }
    mutable edgeagent::Prefilter prefilter_;
};

// A "maybe listed" request: pass it on untouched; squid.conf's adaptation_service ACL
// then has adapted_http_access ask the helper.
class Xaction : public libecap::adapter::Xaction {
  public:
    explicit Xaction(libecap::host::Xaction *x) : hostx_(x) {}
    void start() override {
        libecap::host::Xaction *x = hostx_;
        hostx_ = nullptr;
        x->useVirgin();
    }
    void stop() override { hostx_ = nullptr; }
    void abDiscard() override {}
    void abMake() override {}
    void abMakeMore() override {}
    void abStopMaking() override {}
    libecap::Area abContent(libecap::size_type, libecap::size_type) override {
        return libecap::Area();
    }
    void abContentShift(libecap::size_type) override {}
    void noteVbContentDone(bool) override {}
    void noteVbContentAvailable() override {}
    const libecap::Area option(const libecap::Name &) const override { return libecap::Area(); }
    void visitEachOption(libecap::NamedValueVisitor &) const override {}

  private:
    libecap::host::Xaction *hostx_;
};

Service::MadeXactionPointer Service::makeXaction(libecap::host::Xaction *hostx) {
    return Service::MadeXactionPointer(new Xaction(hostx));
}

const bool Registered = libecap::RegisterVersionedService(new Service);

}  // namespace

#else
// ------------------------------------------------------------------ probe-main (tests)
// Reads raw request paths, one per line, from stdin; prints for each:
//   "-" when not judged, else the probe keys in hex (16 digits each, space-separated),
//   then, with a filter file argument, " wants=0|1".
// `probe-main FILTER [--index INDEX] [--count]`: with --index, the filter is used only
// while it carries the index's policy version; --count prints only
// "<lines> <wanted> <seconds>" (the benchmark's in-process cost, without the printing).
#include <chrono>
#include <cstdio>

int main(int argc, char **argv) {
    std::string filter = argc > 1 ? argv[1] : "", index;
    bool count = false;
    for (int i = 2; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--count") count = true;
        else if (arg == "--index" && i + 1 < argc) index = argv[++i];
    }
    edgeagent::Prefilter prefilter(filter, index);
    std::string line;
    std::vector<uint64_t> keys;
    std::vector<std::string> paths;
    if (count) {
        std::vector<std::string> lines;
        while (std::getline(std::cin, line)) lines.push_back(line);
        prefilter.wants("/");  // load the filter outside the timed loop
        size_t wanted = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (const std::string &l : lines) wanted += prefilter.wants(l) ? 1 : 0;
        const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
        std::cout << lines.size() << " " << wanted << " " << dt.count() << "\n";
        return 0;
    }
    while (std::getline(std::cin, line)) {
        if (!edgeagent::probeKeys(line, keys, paths)) {
            std::cout << "-";
        } else {
            for (size_t i = 0; i < keys.size(); ++i) {
                char buf[20];
                std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(keys[i]));
                std::cout << (i ? " " : "") << buf;
            }
        }
        if (argc > 1) std::cout << " wants=" << (prefilter.wants(line) ? 1 : 0);
        std::cout << "\n";
    }
    return 0;
}
#endif
