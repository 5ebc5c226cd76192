// Replays an activity DAG exported by benchmarks/bench_simgrid.py on SimGrid (s4u activities,
// no actors): execs on worker hosts, comms between a worker and the storage host through a
// star platform (one shared link per worker, one shared storage link; CM02 max-min sharing
// when run with --cfg=network/model:CM02).
//
// Input (text, whitespace separated):
//   faasplan-simgrid-dag 1
//   hosts <workers> <storage_bytes_per_s>, then <workers> worker link bandwidths (bytes/s)
//   activities <count>
//   then <count> lines, activity i on line i (0-based):
//     E <host> <seconds> <npred> <pred>...          an exec of <seconds> on worker <host>
//     C <src> <dst> <bytes> <npred> <pred>...       a comm; host 0 is the storage host
//   sinks <count> <activity>...                     the makespan is the latest of them
//
// Output (stdout, one "key value" per line): activities, makespan_s, setup_cpu_s (building
// the activities, or in mode "ready" the first ones), run_cpu_s (Engine::run), total_cpu_s.
//
// Usage: dag_replay [--cfg=...] [--mode=ready|upfront] DAG_FILE

#include <simgrid/s4u.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace sg4 = simgrid::s4u;

namespace {

constexpr double kHostSpeed = 1e9;  // flop/s: an exec of s seconds is s * 1e9 flops
constexpr int kHostCores = 1024;    // delays never share a core with the task they precede

struct Spec {
  char kind = 'E';
  long src = 0;
  long dst = 0;
  double amount = 0.0;  // seconds (exec) or bytes (comm)
  std::vector<long> preds;
};

struct Input {
  long workers = 0;
  double storage_bw = 0.0;
  std::vector<double> worker_bw;
  std::vector<Spec> acts;
  std::vector<long> sinks;
};

void expect(std::istream& in, const std::string& word)
{
  std::string got;
  if (!(in >> got) || got != word)
    throw std::runtime_error("expected '" + word + "', got '" + got + "'");
}

Input read_input(const std::string& path)
{
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("cannot open " + path);
  Input data;
  int version = 0;
  expect(in, "faasplan-simgrid-dag");
  in >> version;
  if (version != 1)
    throw std::runtime_error("unsupported input version");
  expect(in, "hosts");
  in >> data.workers >> data.storage_bw;
  data.worker_bw.resize(data.workers);
  for (double& bw : data.worker_bw)
    in >> bw;
  long count = 0;
  expect(in, "activities");
  in >> count;
  data.acts.resize(count);
  for (long i = 0; i < count; ++i) {
    Spec& s = data.acts[i];
    long npred = 0;
    in >> s.kind;
    if (s.kind == 'E')
      in >> s.src >> s.amount;
    else if (s.kind == 'C')
      in >> s.src >> s.dst >> s.amount;
    else
      throw std::runtime_error("unknown activity kind on activity " + std::to_string(i));
    in >> npred;
    s.preds.resize(npred);
    for (long& p : s.preds) {
      in >> p;
      if (p < 0 || p >= i)
        throw std::runtime_error("activity " + std::to_string(i) + ": bad predecessor");
    }
  }
  long nsinks = 0;
  expect(in, "sinks");
  in >> nsinks;
  data.sinks.resize(nsinks);
  for (long& s : data.sinks)
    in >> s;
  if (!in)
    throw std::runtime_error("truncated input " + path);
  return data;
}

std::vector<sg4::Host*> build_platform(const Input& data)
{
  auto* zone = sg4::create_star_zone("faas");
  std::vector<sg4::Host*> hosts;
  hosts.reserve(data.workers + 1);
  for (long h = 0; h <= data.workers; ++h) {
    const std::string name = h == 0 ? "storage" : "w" + std::to_string(h);
    sg4::Host* host = zone->create_host(name, kHostSpeed)->set_core_count(kHostCores)->seal();
    const sg4::Link* link =
        zone->create_link(name + "-link", h == 0 ? data.storage_bw : data.worker_bw[h - 1])->set_latency(0)->seal();
    // Symmetrical: uploads and downloads of a host share its one link, as in faasplan.
    zone->add_route(host->get_netpoint(), nullptr, nullptr, nullptr, {sg4::LinkInRoute(link)}, true);
    hosts.push_back(host);
  }
  zone->seal();
  return hosts;
}

double cpu_seconds()
{
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

}  // namespace

// Mode "upfront": every activity is created before Engine::run and SimGrid releases each one
// when its predecessors end (Activity::add_successor). Mode "ready" (the default): an
// activity is created and started when its last predecessor ends, from the completion
// callback; SimGrid then only holds the activities under way. Both give the same times.
class Replay {
public:
  Replay(const Input& data, const std::vector<sg4::Host*>& hosts) : data_(data), hosts_(hosts)
  {
    const size_t n = data.acts.size();
    finished_.assign(n, -1.0);
    missing_.resize(n);
    successors_.resize(n);
    live_.resize(n);
    index_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      missing_[i] = data.acts[i].preds.size();
      for (long p : data.acts[i].preds)
        successors_[p].push_back(static_cast<long>(i));
    }
  }

  void build_upfront()
  {
    // add_successor() is reachable through the typed handles only: keep both per activity.
    std::vector<sg4::ExecPtr> execs(data_.acts.size());
    std::vector<sg4::CommPtr> comms(data_.acts.size());
    for (size_t i = 0; i < data_.acts.size(); ++i) {
      const Spec& s = data_.acts[i];
      if (s.kind == 'E')
        live_[i] = execs[i] = make_exec(s);
      else
        live_[i] = comms[i] = make_comm(s);
      for (long p : s.preds) {
        if (execs[p])
          execs[p]->add_successor(live_[i]);
        else
          comms[p]->add_successor(live_[i]);
      }
      index_.emplace(live_[i].get(), static_cast<long>(i));
    }
    sg4::Activity::on_completion_cb([this](sg4::Activity const& a) { record(a); });
    for (size_t i = 0; i < data_.acts.size(); ++i)
      if (data_.acts[i].preds.empty())
        live_[i]->vetoable_start();
  }

  void build_ready()
  {
    sg4::Activity::on_completion_cb([this](sg4::Activity const& a) {
      const long i = record(a);
      if (i < 0)
        return;
      for (long s : successors_[i])
        if (--missing_[s] == 0)
          launch(s);
    });
    for (size_t i = 0; i < data_.acts.size(); ++i)
      if (missing_[i] == 0)
        launch(static_cast<long>(i));
  }

  double makespan() const
  {
    double out = 0.0;
    for (long s : data_.sinks) {
      if (finished_.at(s) < 0)
        throw std::runtime_error("sink activity " + std::to_string(s) + " never finished");
      out = std::max(out, finished_[s]);
    }
    return out;
  }

private:
  sg4::ExecPtr make_exec(const Spec& s) const
  {
    sg4::ExecPtr e = sg4::Exec::init();
    e->set_flops_amount(std::max(0.0, s.amount) * kHostSpeed);
    e->set_host(hosts_.at(s.src));
    return e;
  }

  sg4::CommPtr make_comm(const Spec& s) const
  {
    sg4::CommPtr c = sg4::Comm::sendto_init(hosts_.at(s.src), hosts_.at(s.dst));
    c->set_payload_size(static_cast<uint64_t>(std::max(0.0, s.amount)));
    return c;
  }

  void launch(long i)
  {
    const Spec& s = data_.acts[i];
    if (s.kind == 'E')
      live_[i] = make_exec(s);
    else
      live_[i] = make_comm(s);
    index_.emplace(live_[i].get(), i);
    live_[i]->start();
  }

  long record(sg4::Activity const& a)
  {
    auto it = index_.find(&a);
    if (it == index_.end())
      return -1;
    const long i = it->second;
    finished_[i] = sg4::Engine::get_clock();
    index_.erase(it);
    return i;
  }

  const Input& data_;
  const std::vector<sg4::Host*>& hosts_;
  std::vector<double> finished_;
  std::vector<size_t> missing_;
  std::vector<std::vector<long>> successors_;
  std::vector<sg4::ActivityPtr> live_;
  std::unordered_map<const sg4::Activity*, long> index_;
};

int main(int argc, char* argv[])
{
  sg4::Engine engine(&argc, argv);
  std::string mode = "ready";
  if (argc == 3 && std::string(argv[1]).rfind("--mode=", 0) == 0) {
    mode = std::string(argv[1]).substr(7);
    argv[1] = argv[2];
    argc = 2;
  }
  if (argc != 2 || (mode != "ready" && mode != "upfront")) {
    std::cerr << "usage: " << argv[0] << " [--cfg=...] [--mode=ready|upfront] DAG_FILE\n";
    return 2;
  }
  Input data;
  try {
    data = read_input(argv[1]);
  } catch (const std::exception& err) {
    std::cerr << "dag_replay: " << err.what() << "\n";
    return 2;
  }
  const std::vector<sg4::Host*> hosts = build_platform(data);

  const double started = cpu_seconds();
  Replay replay(data, hosts);
  if (mode == "upfront")
    replay.build_upfront();
  else
    replay.build_ready();
  const double built = cpu_seconds();
  engine.run();
  const double ran = cpu_seconds();
  try {
    std::printf("activities %zu\nmakespan_s %.12f\nsetup_cpu_s %.6f\nrun_cpu_s %.6f\ntotal_cpu_s %.6f\n",
                data.acts.size(), replay.makespan(), built - started, ran - built, ran - started);
  } catch (const std::exception& err) {
    std::cerr << "dag_replay: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
