-- taphold.lua: a Wireshark dissector for every taphold PDU and the delivery header.
--
--   wireshark -X lua_script:tools/wireshark/taphold.lua capture.pcap
--   tshark -X lua_script:tools/wireshark/taphold.lua -r backup.pcap \
--       -T fields -e taphold.type -e taphold.seq -e taphold.epoch
--   (or copy it into ~/.local/lib/wireshark/plugins/ to load it always)
--
-- The byte-level spec is docs/protocol.md; every field below is a row of its tables,
-- by the same name:
--   taphold.*            the taphold PDU: the 48-byte common header, the body of its
--                        type (backup frame in its four content modes, heartbeat, ack,
--                        confirmation, target confirmation, resend request, flow ack),
--                        the 8-byte keyed digest (SipHash-2-4 over bytes 8.. then 0..8).
--   taphold_delivery.*   the 40-byte delivery header ("TD") that starts every released
--                        datagram with destination.framing: taphold, and every message a
--                        backup node resends.
--
-- Where it is found:
--   * EtherType 0x88B5 (the backup links: backup frames, heartbeats, acks). Everything
--     there is taken as a taphold PDU, and what is wrong with it is expert info.
--   * UDP, on the ports of the preferences below (Edit > Preferences > Protocols >
--     TAPHOLD, or `-o taphold.<pref>:<value>`), defaults as in config/default.yaml:
--     confirmations leave primary.udp_port (9000); released datagrams go to
--     destination.udp_port (9100); target confirmations come to
--     destination.target_confirm_port; resend requests go to a backup node's port.
--     A UDP payload on those ports that starts with neither "TH" nor "TD" (an order
--     itself, say, or framing: raw) is left to other dissectors.
--   * Optionally, any UDP payload that looks like a taphold PDU (magic, version 4, a
--     type and the body length it needs) or a delivery header (magic, version 1,
--     header length 40): the "heuristic" preference, on by default.
--
-- With the `digest_key` preference (the deployment's 32 hex digits, as in the config's
-- digest_key) each PDU's digest is checked: taphold.digest.status 1 good, 0 bad (and
-- expert info taphold.bad_digest), 2 unverified (no key given).

local taphold = Proto("taphold", "taphold PDU")
local delivery = Proto("taphold_delivery", "taphold delivery header")

local HEADER_LEN = 48
local DIGEST_LEN = 8
local DELIVERY_LEN = 40
local MAGIC = 0x5448 -- "TH"
local VERSION = 4
local DELIVERY_MAGIC = 0x5444 -- "TD"
local DELIVERY_VERSION = 1

local T_BACKUP, T_HEARTBEAT, T_ACK, T_CONFIRM, T_TARGET_CONFIRM, T_RESEND, T_FLOW_ACK = 1, 2, 3, 4, 5, 6, 7
local TYPE_NAMES = {
    [1] = "Backup frame",
    [2] = "Heartbeat",
    [3] = "Ack",
    [4] = "Confirmation",
    [5] = "Target confirmation",
    [6] = "Resend request",
    [7] = "Flow ack",
}
local CONTENT_MODES = { [0] = "full copy", [1] = "digest only", [2] = "tcp", [3] = "fix-compact" }
local MODE_TCP, MODE_FIX_COMPACT = 2, 3
-- Gateway modes (2, 3): the 20-byte flow prefix, then the content.
local TCP_PREFIX = 20
local TCP_MAX = 20 + 65535
local LINK_NAMES = { [0] = "link 0", [1] = "link 1", [2] = "link 2", [3] = "link 3", [0xFF] = "not link-specific" }
local DIGEST_STATUS = { [0] = "Bad", [1] = "Good", [2] = "Unverified" }

-- Flag bits (docs/protocol.md): the same in the PDU (byte 5) and the delivery header
-- (bytes 4..6); FROM_NODE is the PDU's only.
local F_POSSIBLE_DUPLICATE, F_UNPROTECTED, F_RETRANSMIT, F_FROM_NODE = 0x0001, 0x0002, 0x0004, 0x0008
local F_ENCRYPTED = 0x0010
local F_KNOWN = 0x0007
local F_PDU_KNOWN = 0x001F
local TAG_LEN = 16

-- Body lengths the types require (checked only after the header: docs/protocol.md,
-- "Validity rules"). A full backup frame's is 8 + payload_len, 8..=65543.
local BODY_LEN = { [T_HEARTBEAT] = 16, [T_ACK] = 8, [T_CONFIRM] = 24, [T_TARGET_CONFIRM] = 8, [T_RESEND] = 8, [T_FLOW_ACK] = 20 }
local BACKUP_DIGEST_BODY = 16
local BACKUP_FULL_MAX = 65543

local f = taphold.fields
f.magic = ProtoField.uint16("taphold.magic", "Magic", base.HEX)
f.version = ProtoField.uint8("taphold.version", "Version", base.DEC)
f.type = ProtoField.uint8("taphold.type", "Type", base.DEC, TYPE_NAMES)
f.key_id = ProtoField.uint8("taphold.key_id", "Key id", base.HEX)
f.flags = ProtoField.uint8("taphold.flags", "Flags", base.HEX)
f.flag_dup = ProtoField.bool("taphold.flags.possible_duplicate", "POSSIBLE_DUPLICATE", 8, nil, F_POSSIBLE_DUPLICATE)
f.flag_unprot = ProtoField.bool("taphold.flags.unprotected", "UNPROTECTED", 8, nil, F_UNPROTECTED)
f.flag_retx = ProtoField.bool("taphold.flags.retransmit", "RETRANSMIT", 8, nil, F_RETRANSMIT)
f.flag_from_node = ProtoField.bool("taphold.flags.from_node", "FROM_NODE", 8, nil, F_FROM_NODE)
f.flag_encrypted = ProtoField.bool("taphold.flags.encrypted", "ENCRYPTED", 8, nil, F_ENCRYPTED)
f.flag_reserved = ProtoField.uint8("taphold.flags.reserved", "Reserved (must be 0)", base.HEX, nil, 0xE0)
f.backup_ciphertext = ProtoField.bytes("taphold.backup.ciphertext", "Payload (encrypted)")
f.backup_tag = ProtoField.bytes("taphold.backup.tag", "Payload tag (Poly1305)")
f.link = ProtoField.uint8("taphold.link", "Link", base.DEC, LINK_NAMES)
f.content_mode = ProtoField.uint8("taphold.content_mode", "Content mode", base.DEC, CONTENT_MODES)
f.stream = ProtoField.uint32("taphold.stream", "Stream", base.DEC)
f.body_len = ProtoField.uint32("taphold.body_len", "Body length", base.DEC)
f.epoch = ProtoField.uint64("taphold.epoch", "Epoch", base.DEC)
f.seq = ProtoField.uint64("taphold.seq", "Seq", base.DEC)
f.timestamp_ns = ProtoField.uint64("taphold.timestamp_ns", "Timestamp (ns)", base.DEC)
f.timestamp = ProtoField.absolute_time("taphold.timestamp", "Timestamp", base.UTC)
f.watermark = ProtoField.uint64("taphold.watermark", "Watermark", base.DEC)
f.backup_src_ip = ProtoField.ipv4("taphold.backup.src_ip", "Source address")
f.backup_src_port = ProtoField.uint16("taphold.backup.src_port", "Source port", base.DEC)
f.backup_payload_len = ProtoField.uint16("taphold.backup.payload_len", "Payload length", base.DEC)
f.backup_payload = ProtoField.bytes("taphold.backup.payload", "Payload")
f.backup_payload_digest = ProtoField.uint64("taphold.backup.payload_digest", "Payload digest", base.HEX)
f.backup_dst_ip = ProtoField.ipv4("taphold.backup.dst_ip", "Destination address")
f.backup_dst_port = ProtoField.uint16("taphold.backup.dst_port", "Destination port", base.DEC)
f.backup_tcp_flags = ProtoField.uint8("taphold.backup.tcp_flags", "TCP flags", base.HEX)
f.backup_reserved = ProtoField.uint8("taphold.backup.reserved", "Reserved", base.HEX)
f.backup_tcp_seq = ProtoField.uint32("taphold.backup.tcp_seq", "TCP seq", base.DEC)
f.backup_compact = ProtoField.bytes("taphold.backup.compact", "Compact FIX encoding")
f.fa_src_ip = ProtoField.ipv4("taphold.flow_ack.src_ip", "Flow source address")
f.fa_src_port = ProtoField.uint16("taphold.flow_ack.src_port", "Flow source port", base.DEC)
f.fa_dst_ip = ProtoField.ipv4("taphold.flow_ack.dst_ip", "Flow destination address")
f.fa_dst_port = ProtoField.uint16("taphold.flow_ack.dst_port", "Flow destination port", base.DEC)
f.fa_reserved = ProtoField.bytes("taphold.flow_ack.reserved", "Reserved")
f.fa_acked = ProtoField.uint32("taphold.flow_ack.acked", "Acked (TCP)", base.DEC)
f.hb_echo_seq = ProtoField.uint64("taphold.heartbeat.echo_seq", "Echo seq", base.DEC)
f.hb_echo_ts = ProtoField.uint64("taphold.heartbeat.echo_timestamp_ns", "Echo timestamp (ns)", base.DEC)
f.ack_records = ProtoField.uint64("taphold.ack.records", "Records journaled", base.DEC)
f.confirm_payload_len = ProtoField.uint16("taphold.confirm.payload_len", "Payload length", base.DEC)
f.confirm_reserved = ProtoField.bytes("taphold.confirm.reserved", "Reserved")
f.confirm_echo = ProtoField.bytes("taphold.confirm.echo", "Echo (first 16 payload bytes)")
f.tc_skipped = ProtoField.uint64("taphold.target_confirm.skipped", "Skipped", base.DEC)
f.resend_count = ProtoField.uint32("taphold.resend.count", "Count", base.DEC)
f.resend_reserved = ProtoField.uint32("taphold.resend.reserved", "Reserved", base.HEX)
f.digest = ProtoField.uint64("taphold.digest", "Digest", base.HEX)
f.digest_status = ProtoField.uint8("taphold.digest.status", "Digest status", base.DEC, DIGEST_STATUS)
f.padding = ProtoField.bytes("taphold.padding", "Padding (ignored)")

local e = {
    bad_magic = ProtoExpert.new("taphold.bad_magic", "Bad magic (not 0x5448 \"TH\")", expert.group.MALFORMED, expert.severity.ERROR),
    bad_version = ProtoExpert.new("taphold.bad_version", "Bad version (not 4)", expert.group.PROTOCOL, expert.severity.ERROR),
    unknown_type = ProtoExpert.new("taphold.unknown_type", "Unknown type (not 1..7)", expert.group.MALFORMED, expert.severity.ERROR),
    bad_flags = ProtoExpert.new("taphold.bad_flags", "Reserved flag bits set", expert.group.MALFORMED, expert.severity.ERROR),
    malformed = ProtoExpert.new("taphold.malformed", "Malformed", expert.group.MALFORMED, expert.severity.ERROR),
    bad_length = ProtoExpert.new("taphold.bad_length", "Bad length", expert.group.MALFORMED, expert.severity.ERROR),
    truncated = ProtoExpert.new("taphold.truncated", "Truncated", expert.group.MALFORMED, expert.severity.ERROR),
    bad_digest = ProtoExpert.new("taphold.bad_digest", "Digest does not match (wrong key, or damaged)", expert.group.CHECKSUM, expert.severity.ERROR),
    retransmit = ProtoExpert.new("taphold.retransmit.expert", "Re-launch (RETRANSMIT)", expert.group.SEQUENCE, expert.severity.NOTE),
    unprotected = ProtoExpert.new("taphold.unprotected.expert", "Released without backup protection (UNPROTECTED)", expert.group.SECURITY, expert.severity.WARN),
}
taphold.experts = { e.bad_magic, e.bad_version, e.unknown_type, e.bad_flags, e.malformed, e.bad_length, e.truncated, e.bad_digest, e.retransmit, e.unprotected }

local d = delivery.fields
d.magic = ProtoField.uint16("taphold_delivery.magic", "Magic", base.HEX)
d.version = ProtoField.uint8("taphold_delivery.version", "Version", base.DEC)
d.header_len = ProtoField.uint8("taphold_delivery.header_len", "Header length", base.DEC)
d.flags = ProtoField.uint16("taphold_delivery.flags", "Flags", base.HEX)
d.flag_dup = ProtoField.bool("taphold_delivery.flags.possible_duplicate", "POSSIBLE_DUPLICATE", 16, nil, F_POSSIBLE_DUPLICATE)
d.flag_unprot = ProtoField.bool("taphold_delivery.flags.unprotected", "UNPROTECTED", 16, nil, F_UNPROTECTED)
d.flag_retx = ProtoField.bool("taphold_delivery.flags.retransmit", "RETRANSMIT", 16, nil, F_RETRANSMIT)
d.flag_reserved = ProtoField.uint16("taphold_delivery.flags.reserved", "Reserved (must be 0)", base.HEX, nil, 0xFFF8)
d.src_port = ProtoField.uint16("taphold_delivery.src_port", "Source port", base.DEC)
d.stream = ProtoField.uint32("taphold_delivery.stream", "Stream", base.DEC)
d.src_ip = ProtoField.ipv4("taphold_delivery.src_ip", "Source address")
d.epoch = ProtoField.uint64("taphold_delivery.epoch", "Epoch", base.DEC)
d.seq = ProtoField.uint64("taphold_delivery.seq", "Seq", base.DEC)
d.release_ns = ProtoField.uint64("taphold_delivery.release_ns", "Release time (ns)", base.DEC)
d.release = ProtoField.absolute_time("taphold_delivery.release", "Release time", base.UTC)
d.payload_len = ProtoField.uint32("taphold_delivery.payload_len", "Payload length", base.DEC)

local de = {
    bad_magic = ProtoExpert.new("taphold_delivery.bad_magic", "Bad magic (not 0x5444 \"TD\")", expert.group.MALFORMED, expert.severity.ERROR),
    bad_version = ProtoExpert.new("taphold_delivery.bad_version", "Bad version (not 1)", expert.group.PROTOCOL, expert.severity.ERROR),
    bad_length = ProtoExpert.new("taphold_delivery.bad_length", "Bad header length (not 40)", expert.group.MALFORMED, expert.severity.ERROR),
    bad_flags = ProtoExpert.new("taphold_delivery.bad_flags", "Reserved flag bits set", expert.group.MALFORMED, expert.severity.ERROR),
    truncated = ProtoExpert.new("taphold_delivery.truncated", "Truncated (fewer than 40 bytes)", expert.group.MALFORMED, expert.severity.ERROR),
    retransmit = ProtoExpert.new("taphold_delivery.retransmit.expert", "Resent by a backup node (RETRANSMIT)", expert.group.SEQUENCE, expert.severity.NOTE),
    duplicate = ProtoExpert.new("taphold_delivery.possible_duplicate.expert", "Possible duplicate (takeover replay)", expert.group.SEQUENCE, expert.severity.NOTE),
    unprotected = ProtoExpert.new("taphold_delivery.unprotected.expert", "Released without backup protection (UNPROTECTED)", expert.group.SECURITY, expert.severity.WARN),
}
delivery.experts = { de.bad_magic, de.bad_version, de.bad_length, de.bad_flags, de.truncated, de.retransmit, de.duplicate, de.unprotected }

-- Preferences: the UDP ports of config/default.yaml, and the key.
taphold.prefs.confirm_src_port = Pref.uint("Confirmation source port (primary.udp_port)", 9000,
    "Confirmations leave the appliance from this UDP port (0: none)")
taphold.prefs.confirm_dst_port = Pref.uint("Confirmation destination port (the sources' port)", 0,
    "Confirmations go to the message's source port; give it if the sources use one fixed port (0: none)")
taphold.prefs.delivery_port = Pref.uint("Delivery destination port (destination.udp_port)", 9100,
    "Released datagrams, with the delivery header under framing: taphold (0: none)")
taphold.prefs.target_confirm_port = Pref.uint("Target-confirm port (destination.target_confirm_port)", 0,
    "The arbiter's target confirmations come to this port of primary.ip (0: none)")
taphold.prefs.node_port = Pref.uint("Backup node's destination-side port", 0,
    "Where an arbiter sends resend requests and target confirmations to a backup node (0: none)")
taphold.prefs.heuristic = Pref.bool("Find taphold PDUs on any UDP port", true,
    "Take a UDP payload for a taphold PDU or delivery header when its first bytes say so")
taphold.prefs.digest_key = Pref.string("Digest key (32 hex digits)", "",
    "The deployment's digest_key: each PDU's digest is checked against it; empty: not checked")

---------------------------------------------------------------------------------------------
-- SipHash-2-4 over UInt64 (Lua 5.2 numbers are doubles): docs/protocol.md, "The digest".

local function sip_round(v)
    v[1] = v[1] + v[2]; v[2] = v[2]:rol(13); v[2] = v[2]:bxor(v[1]); v[1] = v[1]:rol(32)
    v[3] = v[3] + v[4]; v[4] = v[4]:rol(16); v[4] = v[4]:bxor(v[3])
    v[1] = v[1] + v[4]; v[4] = v[4]:rol(21); v[4] = v[4]:bxor(v[1])
    v[3] = v[3] + v[2]; v[2] = v[2]:rol(17); v[2] = v[2]:bxor(v[3]); v[3] = v[3]:rol(32)
end

-- A little-endian 64-bit word from up to 8 byte values (missing ones are 0).
local function le_word(bytes)
    local lo, hi = 0, 0
    for i = 4, 1, -1 do lo = lo * 256 + (bytes[i] or 0) end
    for i = 8, 5, -1 do hi = hi * 256 + (bytes[i] or 0) end
    return UInt64.new(lo, hi)
end

local key_words = nil -- {k0, k1} while a valid key is configured

local function parse_key(hex)
    hex = (hex or ""):gsub("%s", "")
    if #hex ~= 32 or hex:find("[^%x]") then return nil end
    local b = {}
    for i = 1, 16 do b[i] = tonumber(hex:sub(2 * i - 1, 2 * i), 16) end
    return { le_word({ b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8] }),
             le_word({ b[9], b[10], b[11], b[12], b[13], b[14], b[15], b[16] }) }
end

-- The digest of a PDU whose header and body are tvb[off, off + len): SipHash-2-4 of
-- bytes 8 .. len, then bytes 0 .. 8 (the first word, with the key id, flags and link,
-- is read last, so that a sender seals the copies of one frame for several links from
-- one pass).
local function pdu_digest(k, tvb, off, len)
    local v = {
        k[1]:bxor(UInt64.fromhex("736f6d6570736575")),
        k[2]:bxor(UInt64.fromhex("646f72616e646f6d")),
        k[1]:bxor(UInt64.fromhex("6c7967656e657261")),
        k[2]:bxor(UInt64.fromhex("7465646279746573")),
    }
    local function absorb(m)
        v[4] = v[4]:bxor(m)
        sip_round(v)
        sip_round(v)
        v[1] = v[1]:bxor(m)
    end
    -- The message, byte by byte: tvb offsets off+8 .. off+len-1, then off .. off+7.
    local function byte_at(i)
        if i < len - 8 then return tvb:range(off + 8 + i, 1):uint() end
        return tvb:range(off + i - (len - 8), 1):uint()
    end
    local full = len - len % 8
    for i = 0, full - 8, 8 do
        local w = {}
        for j = 1, 8 do w[j] = byte_at(i + j - 1) end
        absorb(le_word(w))
    end
    local last = {}
    for i = 1, len - full do last[i] = byte_at(full + i - 1) end
    for i = len - full + 1, 7 do last[i] = 0 end
    last[8] = len % 256
    absorb(le_word(last))
    v[3] = v[3]:bxor(UInt64.new(0xFF, 0))
    for _ = 1, 4 do sip_round(v) end
    return v[1]:bxor(v[2]):bxor(v[3]):bxor(v[4])
end

---------------------------------------------------------------------------------------------
-- Helpers

-- An absolute time from UNIX-epoch nanoseconds (a UInt64).
local function nstime(ns)
    local s = ns / 1000000000
    return NSTime.new(s:tonumber(), (ns - s * 1000000000):tonumber())
end

local function add_flags(tree, flags_field, bits, range)
    local t = tree:add(flags_field, range)
    for _, b in ipairs(bits) do t:add(b, range) end
    return t
end

local function flag_names(flags)
    local names = {}
    if bit32.band(flags, F_POSSIBLE_DUPLICATE) ~= 0 then names[#names + 1] = "POSSIBLE_DUPLICATE" end
    if bit32.band(flags, F_UNPROTECTED) ~= 0 then names[#names + 1] = "UNPROTECTED" end
    if bit32.band(flags, F_RETRANSMIT) ~= 0 then names[#names + 1] = "RETRANSMIT" end
    if bit32.band(flags, F_FROM_NODE) ~= 0 then names[#names + 1] = "FROM_NODE" end
    if bit32.band(flags, F_ENCRYPTED) ~= 0 then names[#names + 1] = "ENCRYPTED" end
    if #names == 0 then return "" end
    return " [" .. table.concat(names, ",") .. "]"
end

---------------------------------------------------------------------------------------------
-- The taphold PDU. Returns the bytes it took (the PDU, and on the backup link any padding).

local function dissect_pdu(tvb, pinfo, root)
    local avail = tvb:len()
    pinfo.cols.protocol = "taphold"
    local tree = root:add(taphold, tvb:range(0, math.min(avail, tvb:reported_len())))

    if avail < HEADER_LEN then
        if avail >= 2 then tree:add(f.magic, tvb:range(0, 2)) end
        tree:add_proto_expert_info(e.truncated, string.format("Truncated: %d bytes, the header alone is %d", avail, HEADER_LEN))
        pinfo.cols.info = "taphold (truncated header)"
        return avail
    end

    local magic = tvb:range(0, 2):uint()
    local version = tvb:range(2, 1):uint()
    local mtype = tvb:range(3, 1):uint()
    local flags = tvb:range(5, 1):uint()
    local link = tvb:range(6, 1):uint()
    local mode = tvb:range(7, 1):uint()
    local body_len = tvb:range(12, 4):uint()
    local seq = tvb:range(24, 8):uint64()

    local it = tree:add(f.magic, tvb:range(0, 2))
    if magic ~= MAGIC then
        it:add_proto_expert_info(e.bad_magic)
        pinfo.cols.info = string.format("taphold: bad magic 0x%04x", magic)
        return avail
    end
    it = tree:add(f.version, tvb:range(2, 1))
    if version ~= VERSION then
        local why = (version == 1 or version == 2) and " (an older protocol version: refused, not corrupt)" or ""
        it:add_proto_expert_info(e.bad_version, string.format("Bad version %d, want %d%s", version, VERSION, why))
        pinfo.cols.info = string.format("taphold: version %d", version)
        return avail
    end
    it = tree:add(f.type, tvb:range(3, 1))
    local tname = TYPE_NAMES[mtype]
    if not tname then
        it:add_proto_expert_info(e.unknown_type, string.format("Unknown type %d", mtype))
        pinfo.cols.info = string.format("taphold: unknown type %d", mtype)
        return avail
    end
    tree:add(f.key_id, tvb:range(4, 1))
    local ft = add_flags(tree, f.flags, { f.flag_dup, f.flag_unprot, f.flag_retx, f.flag_from_node, f.flag_encrypted, f.flag_reserved }, tvb:range(5, 1))
    local problem = nil -- the first refusal by the rules' order: only the first is reported
    if bit32.band(flags, 0xFF - F_PDU_KNOWN) ~= 0 then
        ft:add_proto_expert_info(e.bad_flags, string.format("Reserved flag bits set: 0x%02x", flags))
        problem = "bad flags"
    elseif bit32.band(flags, 0x07) ~= 0 and mtype ~= T_BACKUP and mtype ~= T_CONFIRM then
        -- Only backup frames and confirmations carry the message flags (bits 0..2;
        -- docs/protocol.md).
        ft:add_proto_expert_info(e.bad_flags, string.format("Flags 0x%02x on a %s, which carries no message flag", flags, tname))
        problem = "bad flags"
    end
    if bit32.band(flags, F_RETRANSMIT) ~= 0 then ft:add_proto_expert_info(e.retransmit) end
    if bit32.band(flags, F_UNPROTECTED) ~= 0 then ft:add_proto_expert_info(e.unprotected) end

    it = tree:add(f.link, tvb:range(6, 1))
    if not problem then
        local from_node = bit32.band(flags, F_FROM_NODE) ~= 0
        local link_ok, why
        if mtype == T_BACKUP then
            link_ok, why = link <= 3 and not from_node, "a backup frame names the link it is launched on (0..3) and is not FROM_NODE"
        elseif mtype == T_HEARTBEAT then
            link_ok, why = link <= 3 or link == 0xFF, "a heartbeat names a link 0..3, or 0xFF"
        elseif mtype == T_FLOW_ACK then
            link_ok, why = (link <= 3 or link == 0xFF) and not from_node, "a flow ack names a link 0..3 (or 0xFF) and is not FROM_NODE"
        elseif mtype == T_ACK then
            link_ok, why = (link <= 3 or link == 0xFF) and from_node, "an ack names a link 0..3 (or 0xFF) and is FROM_NODE"
        else
            link_ok, why = link == 0xFF and not from_node, tname .. " carries 0xFF and is not FROM_NODE"
        end
        if link_ok and bit32.band(flags, F_ENCRYPTED) ~= 0 and (mtype ~= T_BACKUP or mode ~= 0) then
            link_ok, why = false, "only a full-copy backup frame is ENCRYPTED"
        end
        if not link_ok then
            it:add_proto_expert_info(e.malformed, string.format("Link %d, flags 0x%02x: %s", link, flags, why))
            problem = "malformed link"
        end
    end
    it = tree:add(f.content_mode, tvb:range(7, 1))
    if not problem then
        if (mtype == T_BACKUP and mode > 3) or (mtype ~= T_BACKUP and mode ~= 0) then
            it:add_proto_expert_info(e.malformed, string.format("Content mode %d: %s carries %s", mode, tname, mtype == T_BACKUP and "0..3" or "0"))
            problem = "malformed content mode"
        end
    end
    tree:add(f.stream, tvb:range(8, 4))
    it = tree:add(f.body_len, tvb:range(12, 4))
    if not problem then
        local want = BODY_LEN[mtype]
        if mtype == T_BACKUP then
            if mode == 1 then want = BACKUP_DIGEST_BODY end
        end
        local ok
        local gateway = mtype == T_BACKUP and (mode == MODE_TCP or mode == MODE_FIX_COMPACT)
        if want then
            ok = body_len == want
        elseif gateway then
            ok = body_len >= TCP_PREFIX and body_len <= TCP_MAX
        else
            local t = bit32.band(flags, F_ENCRYPTED) ~= 0 and TAG_LEN or 0
            ok = body_len >= 8 + t and body_len <= BACKUP_FULL_MAX + t
        end
        if not ok then
            local need = want and tostring(want) or (gateway and "20..65555" or "8..65543")
            it:add_proto_expert_info(e.bad_length, string.format("Body length %d: %s needs %s", body_len, tname, need))
            problem = "bad length"
        end
    end
    tree:add(f.epoch, tvb:range(16, 8))
    tree:add(f.seq, tvb:range(24, 8))
    tree:add(f.timestamp_ns, tvb:range(32, 8))
    tree:add(f.timestamp, tvb:range(32, 8), nstime(tvb:range(32, 8):uint64())):set_generated()
    tree:add(f.watermark, tvb:range(40, 8))

    local info = string.format("%s seq=%s stream=%d epoch=%s", tname, tostring(seq),
        tvb:range(8, 4):uint(), tostring(tvb:range(16, 8):uint64()))
    if link <= 3 then info = info .. string.format(" link=%d", link) end
    info = info .. flag_names(flags)
    pinfo.cols.info = info

    if problem == "bad length" or problem == "malformed link" or problem == "malformed content mode" then
        pinfo.cols.info = info .. " (" .. problem .. ")"
        return avail
    end
    local total = HEADER_LEN + body_len + DIGEST_LEN
    if avail < total then
        tree:add_proto_expert_info(e.truncated, string.format("Truncated: %d bytes of a %d-byte PDU", avail, total))
        pinfo.cols.info = info .. " (truncated)"
        return avail
    end

    -- The body.
    local b = HEADER_LEN
    local body = tree:add(taphold, tvb:range(b, body_len), tname .. " body")
    if mtype == T_BACKUP then
        body:add(f.backup_src_ip, tvb:range(b, 4))
        body:add(f.backup_src_port, tvb:range(b + 4, 2))
        local pl = body:add(f.backup_payload_len, tvb:range(b + 6, 2))
        local plen = tvb:range(b + 6, 2):uint()
        local enc = bit32.band(flags, F_ENCRYPTED) ~= 0
        local t = enc and TAG_LEN or 0
        if mode == 0 then
            if plen ~= body_len - 8 - t then
                pl:add_proto_expert_info(e.bad_length, string.format("Payload length %d, body length says %d", plen, body_len - 8 - t))
                problem = problem or "bad length"
            elseif enc then
                body:add(f.backup_ciphertext, tvb:range(b + 8, plen))
                body:add(f.backup_tag, tvb:range(b + 8 + plen, TAG_LEN))
            else
                body:add(f.backup_payload, tvb:range(b + 8, body_len - 8))
            end
        elseif mode == 1 then
            body:add(f.backup_payload_digest, tvb:range(b + 8, 8))
        else
            -- Gateway modes: the flow prefix, then the payload (tcp) or the compact
            -- encoding of its FIX messages (fix-compact; payload_len stays the original).
            body:add(f.backup_dst_ip, tvb:range(b + 8, 4))
            body:add(f.backup_dst_port, tvb:range(b + 12, 2))
            body:add(f.backup_tcp_flags, tvb:range(b + 14, 1))
            local r = body:add(f.backup_reserved, tvb:range(b + 15, 1))
            body:add(f.backup_tcp_seq, tvb:range(b + 16, 4))
            if mode == MODE_TCP and plen ~= body_len - TCP_PREFIX then
                pl:add_proto_expert_info(e.bad_length, string.format("Payload length %d, body length says %d", plen, body_len - TCP_PREFIX))
                problem = problem or "bad length"
            elseif tvb:range(b + 15, 1):uint() ~= 0 then
                r:add_proto_expert_info(e.malformed, "Reserved byte not zero")
                problem = problem or "malformed"
            end
            if body_len > TCP_PREFIX then
                local field = mode == MODE_TCP and f.backup_payload or f.backup_compact
                body:add(field, tvb:range(b + TCP_PREFIX, body_len - TCP_PREFIX))
            end
            info = info .. string.format(" flow=%s:%d-%s:%d tcp_seq=%d", tostring(tvb:range(b, 4):ipv4()),
                tvb:range(b + 4, 2):uint(), tostring(tvb:range(b + 8, 4):ipv4()), tvb:range(b + 12, 2):uint(),
                tvb:range(b + 16, 4):uint())
        end
    elseif mtype == T_HEARTBEAT then
        body:add(f.hb_echo_seq, tvb:range(b, 8))
        body:add(f.hb_echo_ts, tvb:range(b + 8, 8))
    elseif mtype == T_ACK then
        body:add(f.ack_records, tvb:range(b, 8))
    elseif mtype == T_CONFIRM then
        body:add(f.confirm_payload_len, tvb:range(b, 2))
        local r = body:add(f.confirm_reserved, tvb:range(b + 2, 6))
        if tvb:range(b + 2, 2):uint() ~= 0 or tvb:range(b + 4, 4):uint() ~= 0 then
            r:add_proto_expert_info(e.malformed, "Reserved bytes not zero")
            problem = problem or "malformed"
        end
        body:add(f.confirm_echo, tvb:range(b + 8, 16))
    elseif mtype == T_TARGET_CONFIRM then
        body:add(f.tc_skipped, tvb:range(b, 8))
    elseif mtype == T_RESEND then
        local c = body:add(f.resend_count, tvb:range(b, 4))
        local r = body:add(f.resend_reserved, tvb:range(b + 4, 4))
        local count = tvb:range(b, 4):uint()
        if seq == UInt64.new(0, 0) then
            c:add_proto_expert_info(e.malformed, "Seq 0: a resend request names the first missing seq, from 1")
            problem = problem or "malformed"
        elseif count == 0 then
            c:add_proto_expert_info(e.malformed, "Count 0: a resend request asks for at least one seq")
            problem = problem or "malformed"
        elseif seq + (count - 1) < seq then
            c:add_proto_expert_info(e.malformed, "The range runs past 2^64 - 1")
            problem = problem or "malformed"
        elseif tvb:range(b + 4, 4):uint() ~= 0 then
            r:add_proto_expert_info(e.malformed, "Reserved bytes not zero")
            problem = problem or "malformed"
        end
        info = info .. string.format(" count=%d", count)
    elseif mtype == T_FLOW_ACK then
        body:add(f.fa_src_ip, tvb:range(b, 4))
        body:add(f.fa_src_port, tvb:range(b + 4, 2))
        local r1 = body:add(f.fa_reserved, tvb:range(b + 6, 2))
        body:add(f.fa_dst_ip, tvb:range(b + 8, 4))
        body:add(f.fa_dst_port, tvb:range(b + 12, 2))
        local r2 = body:add(f.fa_reserved, tvb:range(b + 14, 2))
        body:add(f.fa_acked, tvb:range(b + 16, 4))
        if tvb:range(b + 6, 2):uint() ~= 0 then
            r1:add_proto_expert_info(e.malformed, "Reserved bytes not zero")
            problem = problem or "malformed"
        elseif tvb:range(b + 14, 2):uint() ~= 0 then
            r2:add_proto_expert_info(e.malformed, "Reserved bytes not zero")
            problem = problem or "malformed"
        end
        info = info .. string.format(" flow=%s:%d-%s:%d acked=%d", tostring(tvb:range(b, 4):ipv4()),
            tvb:range(b + 4, 2):uint(), tostring(tvb:range(b + 8, 4):ipv4()), tvb:range(b + 12, 2):uint(),
            tvb:range(b + 16, 4):uint())
    end

    -- The digest trailer.
    local dr = tvb:range(b + body_len, DIGEST_LEN)
    local dt = tree:add(f.digest, dr)
    if key_words then
        local want = pdu_digest(key_words, tvb, 0, b + body_len)
        if want == dr:uint64() then
            dt:add(f.digest_status, dr, 1):set_generated()
        else
            dt:add(f.digest_status, dr, 0):set_generated()
            dt:add_proto_expert_info(e.bad_digest, "Digest " .. dr:uint64():tohex() .. ", want " .. want:tohex() .. " under the configured key")
            problem = problem or "bad digest"
        end
    else
        dt:add(f.digest_status, dr, 2):set_generated()
    end
    if avail > total then tree:add(f.padding, tvb:range(total, avail - total)) end
    pinfo.cols.info = problem and (info .. " (" .. problem .. ")") or info
    return avail
end

---------------------------------------------------------------------------------------------
-- The delivery header, then the payload (handed to the data dissector).

local data_dissector = Dissector.get("data")

local function dissect_delivery(tvb, pinfo, root)
    local avail = tvb:len()
    pinfo.cols.protocol = "taphold_delivery"
    local tree = root:add(delivery, tvb:range(0, math.min(avail, DELIVERY_LEN)))
    if avail < DELIVERY_LEN then
        tree:add_proto_expert_info(de.truncated, string.format("Truncated: %d bytes", avail))
        pinfo.cols.info = "taphold delivery (truncated)"
        return avail
    end
    local it = tree:add(d.magic, tvb:range(0, 2))
    if tvb:range(0, 2):uint() ~= DELIVERY_MAGIC then
        it:add_proto_expert_info(de.bad_magic)
        return avail
    end
    it = tree:add(d.version, tvb:range(2, 1))
    if tvb:range(2, 1):uint() ~= DELIVERY_VERSION then
        it:add_proto_expert_info(de.bad_version, string.format("Bad version %d, want %d", tvb:range(2, 1):uint(), DELIVERY_VERSION))
        return avail
    end
    it = tree:add(d.header_len, tvb:range(3, 1))
    if tvb:range(3, 1):uint() ~= DELIVERY_LEN then
        it:add_proto_expert_info(de.bad_length, string.format("Header length %d, want %d", tvb:range(3, 1):uint(), DELIVERY_LEN))
        return avail
    end
    local flags = tvb:range(4, 2):uint()
    local ft = add_flags(tree, d.flags, { d.flag_dup, d.flag_unprot, d.flag_retx, d.flag_reserved }, tvb:range(4, 2))
    if bit32.band(flags, 0xFFFF - F_KNOWN) ~= 0 then
        ft:add_proto_expert_info(de.bad_flags, string.format("Reserved flag bits set: 0x%04x", flags))
    end
    if bit32.band(flags, F_RETRANSMIT) ~= 0 then ft:add_proto_expert_info(de.retransmit) end
    if bit32.band(flags, F_POSSIBLE_DUPLICATE) ~= 0 then ft:add_proto_expert_info(de.duplicate) end
    if bit32.band(flags, F_UNPROTECTED) ~= 0 then ft:add_proto_expert_info(de.unprotected) end
    tree:add(d.src_port, tvb:range(6, 2))
    tree:add(d.stream, tvb:range(8, 4))
    tree:add(d.src_ip, tvb:range(12, 4))
    tree:add(d.epoch, tvb:range(16, 8))
    tree:add(d.seq, tvb:range(24, 8))
    tree:add(d.release_ns, tvb:range(32, 8))
    tree:add(d.release, tvb:range(32, 8), nstime(tvb:range(32, 8):uint64())):set_generated()
    tree:add(d.payload_len, avail - DELIVERY_LEN):set_generated()
    pinfo.cols.info = string.format("Delivery seq=%s stream=%d epoch=%s len=%d%s",
        tostring(tvb:range(24, 8):uint64()), tvb:range(8, 4):uint(), tostring(tvb:range(16, 8):uint64()),
        avail - DELIVERY_LEN, flag_names(flags))
    if avail > DELIVERY_LEN then
        data_dissector:call(tvb:range(DELIVERY_LEN):tvb(), pinfo, root)
    end
    return avail
end

---------------------------------------------------------------------------------------------
-- Entry points.

-- What a UDP payload is, by its first bytes: "TH" a taphold PDU, "TD" a delivery
-- header, anything else not ours (0: other dissectors get it).
local function dissect_udp(tvb, pinfo, root)
    if tvb:len() < 2 then return 0 end
    local m = tvb:range(0, 2):uint()
    if m == MAGIC then return dissect_pdu(tvb, pinfo, root) end
    if m == DELIVERY_MAGIC then return dissect_delivery(tvb, pinfo, root) end
    return 0
end

-- On the backup link's EtherType everything is ours; on UDP only what says so.
function taphold.dissector(tvb, pinfo, root)
    if pinfo.port_type == 3 then -- PT_UDP: called from a udp.port entry
        return dissect_udp(tvb, pinfo, root)
    end
    return dissect_pdu(tvb, pinfo, root)
end

local function looks_like_pdu(tvb)
    local n = tvb:len()
    if n < HEADER_LEN + DIGEST_LEN then return false end
    if tvb:range(0, 2):uint() ~= MAGIC or tvb:range(2, 1):uint() ~= VERSION then return false end
    local mtype = tvb:range(3, 1):uint()
    if not TYPE_NAMES[mtype] then return false end
    local body_len = tvb:range(12, 4):uint()
    local want = BODY_LEN[mtype]
    local mode = tvb:range(7, 1):uint()
    if mtype == T_BACKUP then
        if mode == 1 then want = BACKUP_DIGEST_BODY end
        if mode == MODE_TCP or mode == MODE_FIX_COMPACT then
            return body_len >= TCP_PREFIX and body_len <= TCP_MAX
        end
    end
    if want then return body_len == want end
    return body_len >= 8 and body_len <= BACKUP_FULL_MAX
end

local function looks_like_delivery(tvb)
    return tvb:len() >= DELIVERY_LEN and tvb:range(0, 2):uint() == DELIVERY_MAGIC
        and tvb:range(2, 1):uint() == DELIVERY_VERSION and tvb:range(3, 1):uint() == DELIVERY_LEN
        and bit32.band(tvb:range(4, 2):uint(), 0xFFFF - F_KNOWN) == 0
end

local function heuristic(tvb, pinfo, root)
    if not taphold.prefs.heuristic then return false end
    if looks_like_pdu(tvb) then
        dissect_pdu(tvb, pinfo, root)
        return true
    end
    if looks_like_delivery(tvb) then
        dissect_delivery(tvb, pinfo, root)
        return true
    end
    return false
end

DissectorTable.get("ethertype"):add(0x88B5, taphold)
taphold:register_heuristic("udp", heuristic)

local udp_ports = DissectorTable.get("udp.port")
local registered = {}

local function register_ports()
    for _, p in ipairs(registered) do udp_ports:remove(p, taphold) end
    registered = {}
    local prefs = taphold.prefs
    for _, p in ipairs({ prefs.confirm_src_port, prefs.confirm_dst_port, prefs.delivery_port,
                         prefs.target_confirm_port, prefs.node_port }) do
        if p > 0 and p < 65536 then
            udp_ports:add(p, taphold)
            registered[#registered + 1] = p
        end
    end
    key_words = parse_key(prefs.digest_key)
end

function taphold.prefs_changed()
    register_ports()
end

register_ports()
