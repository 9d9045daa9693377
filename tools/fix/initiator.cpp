// The live lab's trading engine: a QuickFIX initiator (FIX.4.2) that logs on,
// sends --count limit NewOrderSingle messages at --rate per second, and waits
// until every one is filled by an ExecutionReport (OrdStatus 2).
//
//   initiator --config FILE --count N [--rate PER_S] [--timeout S] [--logon-timeout S]
//             [--clordid-prefix P]
//
// stdout: one JSON object per line, for the lab's tests to read:
//   {"event":"logon","t_us":...}
//   {"event":"order","clordid":"P00000001","seq":2,"side":"1","symbol":"TAPH","qty":"100","price":"100.01","t_us":...}
//   {"event":"exec","clordid":"P00000001","seq":2,"exec_type":"2","ord_status":"2","cum_qty":"100","t_us":...}
//   {"event":"reject","msg_type":"3","seq":...,"ref_seq":"...","text":"..."}   (session or business reject)
//   {"event":"resend","clordid":"...","seq":...}                               (a PossDup resend of an order)
//   {"event":"done","sent":N,"filled":F,"execs":E,"rejects":R,"ok":true}
// Exit status: 0 when all N orders are filled, 1 on timeout, 2 when the session
// never logged on or the configuration is bad.
//
// The session (addresses, CompIDs, FileStorePath, FileLogPath) comes from the
// QuickFIX settings file; the lab writes a fresh one, in a fresh directory, per run.

#include "quickfix/Application.h"
#include "quickfix/FileLog.h"
#include "quickfix/FileStore.h"
#include "quickfix/MessageCracker.h"
#include "quickfix/Session.h"
#include "quickfix/SessionSettings.h"
#include "quickfix/SocketInitiator.h"
#include "quickfix/fix42/ExecutionReport.h"
#include "quickfix/fix42/NewOrderSingle.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

namespace {

std::mutex out_mutex;

long long now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A JSON string literal (FIX field values are printable ASCII; escape the rest).
std::string js(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c < 0x20 || c > 0x7e) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

void emit(const std::string& line) {
  std::lock_guard<std::mutex> l(out_mutex);
  std::cout << line << std::endl;
}

std::string field(const FIX::FieldMap& m, int tag) {
  return m.isSetField(tag) ? m.getField(tag) : std::string();
}

class Engine : public FIX::Application, public FIX::MessageCracker {
 public:
  std::mutex m;
  std::condition_variable cv;
  bool logged_on = false;
  FIX::SessionID session;
  std::set<std::string> filled;
  unsigned long execs = 0;
  unsigned long rejects = 0;

  void onCreate(const FIX::SessionID&) override {}
  void onLogon(const FIX::SessionID& id) override {
    emit("{\"event\":\"logon\",\"t_us\":" + std::to_string(now_us()) + "}");
    std::lock_guard<std::mutex> l(m);
    logged_on = true;
    session = id;
    cv.notify_all();
  }
  void onLogout(const FIX::SessionID&) override {
    emit("{\"event\":\"logout\",\"t_us\":" + std::to_string(now_us()) + "}");
    std::lock_guard<std::mutex> l(m);
    logged_on = false;
    cv.notify_all();
  }
  void toAdmin(FIX::Message&, const FIX::SessionID&) override {}
  void toApp(FIX::Message& msg, const FIX::SessionID&) throw(FIX::DoNotSend) override {
    // Called once the header is filled: MsgSeqNum is the one on the wire.
    const FIX::Header& h = msg.getHeader();
    if (field(h, FIX::FIELD::MsgType) != "D") return;
    bool resend = field(h, FIX::FIELD::PossDupFlag) == "Y";
    std::ostringstream o;
    o << "{\"event\":" << (resend ? "\"resend\"" : "\"order\"")
      << ",\"clordid\":" << js(field(msg, FIX::FIELD::ClOrdID))
      << ",\"seq\":" << field(h, FIX::FIELD::MsgSeqNum)
      << ",\"side\":" << js(field(msg, FIX::FIELD::Side))
      << ",\"symbol\":" << js(field(msg, FIX::FIELD::Symbol))
      << ",\"qty\":" << js(field(msg, FIX::FIELD::OrderQty))
      << ",\"price\":" << js(field(msg, FIX::FIELD::Price)) << ",\"t_us\":" << now_us() << "}";
    emit(o.str());
  }
  void fromAdmin(const FIX::Message& msg, const FIX::SessionID&) throw(
      FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
      FIX::RejectLogon) override {
    if (field(msg.getHeader(), FIX::FIELD::MsgType) == "3") reject(msg);
  }
  void fromApp(const FIX::Message& msg, const FIX::SessionID& id) throw(
      FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
      FIX::UnsupportedMessageType) override {
    if (field(msg.getHeader(), FIX::FIELD::MsgType) == "j") {
      reject(msg);
      return;
    }
    crack(msg, id);
  }
  void onMessage(const FIX42::ExecutionReport& er, const FIX::SessionID&) override {
    std::string clordid = field(er, FIX::FIELD::ClOrdID);
    std::string status = field(er, FIX::FIELD::OrdStatus);
    std::ostringstream o;
    o << "{\"event\":\"exec\",\"clordid\":" << js(clordid)
      << ",\"seq\":" << field(er.getHeader(), FIX::FIELD::MsgSeqNum)
      << ",\"exec_type\":" << js(field(er, FIX::FIELD::ExecType))
      << ",\"ord_status\":" << js(status)
      << ",\"cum_qty\":" << js(field(er, FIX::FIELD::CumQty)) << ",\"t_us\":" << now_us() << "}";
    emit(o.str());
    std::lock_guard<std::mutex> l(m);
    ++execs;
    if (status == "2") filled.insert(clordid);
    cv.notify_all();
  }

 private:
  void reject(const FIX::Message& msg) {
    std::ostringstream o;
    o << "{\"event\":\"reject\",\"msg_type\":" << js(field(msg.getHeader(), FIX::FIELD::MsgType))
      << ",\"seq\":" << field(msg.getHeader(), FIX::FIELD::MsgSeqNum)
      << ",\"ref_seq\":" << js(field(msg, FIX::FIELD::RefSeqNum))
      << ",\"text\":" << js(field(msg, FIX::FIELD::Text)) << "}";
    emit(o.str());
    std::lock_guard<std::mutex> l(m);
    ++rejects;
  }
};

[[noreturn]] void usage(const char* why) {
  std::cerr << "initiator: " << why
            << "\nusage: initiator --config FILE --count N [--rate PER_S] [--timeout S]"
               " [--logon-timeout S] [--clordid-prefix P]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  std::string prefix = "O";
  long count = -1;
  double rate = 0;  // 0: as fast as the session takes them
  double timeout_s = 30;
  double logon_timeout_s = 15;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") {
      std::cout << "initiator --config FILE --count N [--rate PER_S] [--timeout S] "
                   "[--logon-timeout S] [--clordid-prefix P]\n";
      return 0;
    }
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    std::string v = argv[++i];
    if (a == "--config") config = v;
    else if (a == "--count") count = std::atol(v.c_str());
    else if (a == "--rate") rate = std::atof(v.c_str());
    else if (a == "--timeout") timeout_s = std::atof(v.c_str());
    else if (a == "--logon-timeout") logon_timeout_s = std::atof(v.c_str());
    else if (a == "--clordid-prefix") prefix = v;
    else usage(("unknown option " + a).c_str());
  }
  if (config.empty() || count < 0) usage("--config and --count are required");

  Engine engine;
  // The initiator keeps references to the settings and both factories: they
  // live as long as it does.
  std::unique_ptr<FIX::SessionSettings> settings;
  std::unique_ptr<FIX::FileStoreFactory> store;
  std::unique_ptr<FIX::FileLogFactory> log;
  std::unique_ptr<FIX::SocketInitiator> initiator;
  try {
    settings.reset(new FIX::SessionSettings(config));
    store.reset(new FIX::FileStoreFactory(*settings));
    log.reset(new FIX::FileLogFactory(*settings));
    initiator.reset(new FIX::SocketInitiator(engine, *store, *settings, *log));
    initiator->start();
  } catch (std::exception& e) {
    std::cerr << "initiator: " << e.what() << "\n";
    return 2;
  }

  using clock = std::chrono::steady_clock;
  {
    std::unique_lock<std::mutex> l(engine.m);
    auto deadline = clock::now() + std::chrono::duration<double>(logon_timeout_s);
    if (!engine.cv.wait_until(l, deadline, [&] { return engine.logged_on; })) {
      l.unlock();
      emit("{\"event\":\"done\",\"sent\":0,\"filled\":0,\"execs\":0,\"rejects\":0,"
           "\"ok\":false,\"error\":\"no logon\"}");
      initiator->stop(true);
      return 2;
    }
  }

  static const char* symbols[] = {"TAPH", "MSFT", "AAPL", "VOD.L"};
  auto start = clock::now();
  long sent = 0;
  for (long i = 1; i <= count; ++i) {
    if (rate > 0)
      std::this_thread::sleep_until(start + std::chrono::duration_cast<clock::duration>(
                                                std::chrono::duration<double>((i - 1) / rate)));
    char clordid[32];
    std::snprintf(clordid, sizeof clordid, "%s%08ld", prefix.c_str(), i);
    char price[32];
    std::snprintf(price, sizeof price, "%ld.%02ld", 100 + i % 7, i % 100);
    FIX42::NewOrderSingle order(FIX::ClOrdID(clordid),
                                FIX::HandlInst(FIX::HandlInst_AUTOMATED_EXECUTION_ORDER_PRIVATE_NO_BROKER_INTERVENTION),
                                FIX::Symbol(symbols[i % 4]), FIX::Side(i % 2 ? FIX::Side_BUY : FIX::Side_SELL),
                                FIX::TransactTime(), FIX::OrdType(FIX::OrdType_LIMIT));
    order.set(FIX::OrderQty(100 + 10 * (i % 10)));
    order.setField(FIX::FIELD::Price, price);
    order.set(FIX::TimeInForce(FIX::TimeInForce_DAY));
    try {
      if (!FIX::Session::sendToTarget(order, engine.session)) break;
    } catch (FIX::SessionNotFound&) {
      break;
    }
    ++sent;
  }

  bool ok;
  {
    std::unique_lock<std::mutex> l(engine.m);
    auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
    ok = engine.cv.wait_until(l, deadline, [&] { return (long)engine.filled.size() >= count; });
    ok = ok && sent == count;
  }
  // Logout, and wait (up to 10 s) for the exchange's answer; after a timeout
  // the exchange is not answering: do not wait for it.
  initiator->stop(!ok);
  std::ostringstream o;
  {
    std::lock_guard<std::mutex> l(engine.m);
    o << "{\"event\":\"done\",\"sent\":" << sent << ",\"filled\":" << engine.filled.size()
      << ",\"execs\":" << engine.execs << ",\"rejects\":" << engine.rejects
      << ",\"ok\":" << (ok ? "true" : "false") << "}";
  }
  emit(o.str());
  return ok ? 0 : 1;
}
