-- SPDX-License-Identifier: LGPL-2.1-or-later
-- usbredir.lua: Wireshark dissector for usbgate's raw usbredir records (exported PDU, dissector name "usbredir").
--
-- usbdump --raw (and usbgate's pcap writer) store each usbredir packet as a
-- link-type-252 record: exported-PDU tags naming this dissector and the
-- direction, then usbgate's 24-byte prefix, then the packet exactly as it
-- went over the wire. The prefix (big-endian) is:
--   "UGRW", u8 version (1), u8 dir (0 guest->host, 1 host->guest), u8 flags
--   (bit 0 caps known, bit 1 64-bit id), u8 0, u32 negotiated caps,
--   u32 session, u32 packet length, u32 offset of this fragment.
-- Packets longer than one record are split; only the first fragment holds
-- the usbredir header.
--
-- Every usbredir packet type is decoded here, with the caps-dependent header
-- sizes taken from the caps in the prefix. Transfers are also handed to
-- Wireshark's own USB dissector: for each data packet (and for the
-- configuration and alt-setting packets, which stand for SET_CONFIGURATION,
-- GET_CONFIGURATION, SET_INTERFACE and GET_INTERFACE) this dissector builds
-- the Linux usbmon record the guest's kernel would have logged and calls the
-- usbmon dissector on it, so that descriptors, mass storage, HID and the
-- other class dissectors work as on a usbmon capture. Bus 1, device number =
-- session number.

local usbredir = Proto("usbredir", "USB redirection (usbredir)")

local type_names = {
	[0] = "hello", [1] = "device_connect", [2] = "device_disconnect", [3] = "reset",
	[4] = "interface_info", [5] = "ep_info", [6] = "set_configuration",
	[7] = "get_configuration", [8] = "configuration_status", [9] = "set_alt_setting",
	[10] = "get_alt_setting", [11] = "alt_setting_status", [12] = "start_iso_stream",
	[13] = "stop_iso_stream", [14] = "iso_stream_status", [15] = "start_interrupt_receiving",
	[16] = "stop_interrupt_receiving", [17] = "interrupt_receiving_status",
	[18] = "alloc_bulk_streams", [19] = "free_bulk_streams", [20] = "bulk_streams_status",
	[21] = "cancel_data_packet", [22] = "filter_reject", [23] = "filter_filter",
	[24] = "device_disconnect_ack", [25] = "start_bulk_receiving",
	[26] = "stop_bulk_receiving", [27] = "bulk_receiving_status",
	[100] = "control_packet", [101] = "bulk_packet", [102] = "iso_packet",
	[103] = "interrupt_packet", [104] = "buffered_bulk_packet",
}
local status_names = {
	[0] = "success", [1] = "cancelled", [2] = "inval", [3] = "ioerror", [4] = "stall",
	[5] = "timeout", [6] = "babble",
}
local speed_names = { [0] = "low", [1] = "full", [2] = "high", [3] = "super", [255] = "unknown" }
local ep_type_names = { [0] = "control", [1] = "iso", [2] = "bulk", [3] = "interrupt",
	[255] = "invalid" }
local dir_names = { [0] = "guest->host", [1] = "host->guest" }
local cap_names = {
	[0] = "bulk_streams", [1] = "connect_device_version", [2] = "filter",
	[3] = "device_disconnect_ack", [4] = "ep_info_max_packet_size", [5] = "64bits_ids",
	[6] = "32bits_bulk_length", [7] = "bulk_receiving",
}

local F = {
	magic = ProtoField.string("usbredir.prefix.magic", "Magic"),
	version = ProtoField.uint8("usbredir.prefix.version", "Record version"),
	dir = ProtoField.uint8("usbredir.dir", "Direction", base.DEC, dir_names),
	flags = ProtoField.uint8("usbredir.prefix.flags", "Flags", base.HEX),
	caps = ProtoField.uint32("usbredir.caps", "Negotiated caps", base.HEX),
	session = ProtoField.uint32("usbredir.session", "Session"),
	total = ProtoField.uint32("usbredir.packet_length", "Packet length on the wire"),
	frag_offset = ProtoField.uint32("usbredir.fragment_offset", "Fragment offset"),
	type = ProtoField.uint32("usbredir.type", "Type", base.DEC, type_names),
	length = ProtoField.uint32("usbredir.length", "Length"),
	id = ProtoField.uint64("usbredir.id", "Id"),
	version_str = ProtoField.string("usbredir.hello.version", "Version"),
	cap_word = ProtoField.uint32("usbredir.hello.caps", "Caps", base.HEX),
	cap = ProtoField.string("usbredir.hello.cap", "Cap"),
	speed = ProtoField.uint8("usbredir.speed", "Speed", base.DEC, speed_names),
	dev_class = ProtoField.uint8("usbredir.device_class", "Device class", base.HEX),
	dev_subclass = ProtoField.uint8("usbredir.device_subclass", "Device subclass", base.HEX),
	dev_protocol = ProtoField.uint8("usbredir.device_protocol", "Device protocol", base.HEX),
	vendor_id = ProtoField.uint16("usbredir.vendor_id", "Vendor id", base.HEX),
	product_id = ProtoField.uint16("usbredir.product_id", "Product id", base.HEX),
	bcd = ProtoField.uint16("usbredir.device_version_bcd", "Device version (BCD)", base.HEX),
	interface_count = ProtoField.uint32("usbredir.interface_count", "Interface count"),
	interface = ProtoField.uint8("usbredir.interface", "Interface"),
	if_class = ProtoField.uint8("usbredir.interface_class", "Interface class", base.HEX),
	if_subclass = ProtoField.uint8("usbredir.interface_subclass", "Interface subclass", base.HEX),
	if_protocol = ProtoField.uint8("usbredir.interface_protocol", "Interface protocol", base.HEX),
	ep_type = ProtoField.uint8("usbredir.ep_type", "Endpoint type", base.DEC, ep_type_names),
	interval = ProtoField.uint8("usbredir.interval", "Interval"),
	max_packet_size = ProtoField.uint16("usbredir.max_packet_size", "Max packet size"),
	max_streams = ProtoField.uint32("usbredir.max_streams", "Max streams"),
	configuration = ProtoField.uint8("usbredir.configuration", "Configuration"),
	alt = ProtoField.uint8("usbredir.alt", "Alternate setting"),
	status = ProtoField.uint8("usbredir.status", "Status", base.DEC, status_names),
	endpoint = ProtoField.uint8("usbredir.endpoint", "Endpoint", base.HEX),
	pkts_per_urb = ProtoField.uint8("usbredir.pkts_per_urb", "Packets per URB"),
	no_urbs = ProtoField.uint8("usbredir.no_urbs", "URBs"),
	endpoints = ProtoField.uint32("usbredir.endpoints", "Endpoint mask", base.HEX),
	no_streams = ProtoField.uint32("usbredir.no_streams", "Streams"),
	stream_id = ProtoField.uint32("usbredir.stream_id", "Stream id"),
	bytes_per_transfer = ProtoField.uint32("usbredir.bytes_per_transfer", "Bytes per transfer"),
	no_transfers = ProtoField.uint8("usbredir.no_transfers", "Transfers"),
	filter = ProtoField.string("usbredir.filter", "Filter rules"),
	request = ProtoField.uint8("usbredir.request", "bRequest", base.HEX),
	requesttype = ProtoField.uint8("usbredir.requesttype", "bmRequestType", base.HEX),
	value = ProtoField.uint16("usbredir.value", "wValue", base.HEX),
	index = ProtoField.uint16("usbredir.index", "wIndex", base.HEX),
	data_length = ProtoField.uint32("usbredir.data_length", "Transfer length"),
	length_high = ProtoField.uint16("usbredir.length_high", "Length (high 16 bits)"),
	request_name = ProtoField.string("usbredir.request_name", "Request"),
	data = ProtoField.bytes("usbredir.data", "Data"),
	fragment = ProtoField.bytes("usbredir.fragment", "Fragment of a longer packet"),
}
usbredir.fields = {}
for _, f in pairs(F) do
	table.insert(usbredir.fields, f)
end

local ef_short = ProtoExpert.new("usbredir.short", "Packet shorter than its type header",
	expert.group.MALFORMED, expert.severity.ERROR)
local ef_prefix = ProtoExpert.new("usbredir.bad_prefix", "Not a usbgate raw record prefix",
	expert.group.MALFORMED, expert.severity.ERROR)
local ef_unpaired = ProtoExpert.new("usbredir.unpaired", "Answer without a request",
	expert.group.SEQUENCE, expert.severity.NOTE)
usbredir.experts = { ef_short, ef_prefix, ef_unpaired }

-- Caps bits.
local CAP_BULK_STREAMS, CAP_DEVICE_VERSION, CAP_EP_MPS, CAP_64BIT_IDS, CAP_BULK32 = 0, 1, 4, 5, 6

local function has_cap(caps, bit_no)
	return bit.band(caps, bit.lshift(1, bit_no)) ~= 0
end

-- Size of a packet type's header under the negotiated caps (nil: unknown
-- type). Without known caps the caps-dependent sizes follow the length.
local function type_header_size(t, caps, length, caps_known)
	if not caps_known then
		if t == 1 then return length >= 10 and 10 or 8 end
		if t == 5 then
			return (length >= 288 and 288) or (length >= 160 and 160) or 96
		end
	end
	local fixed = {
		[2] = 0, [3] = 0, [4] = 132, [6] = 1, [7] = 0, [8] = 2, [9] = 2, [10] = 1, [11] = 3,
		[12] = 3, [13] = 1, [14] = 2, [15] = 1, [16] = 1, [17] = 2, [18] = 8, [19] = 4,
		[20] = 9, [21] = 0, [22] = 0, [23] = 0, [24] = 0, [25] = 10, [26] = 5, [27] = 6,
		[100] = 10, [102] = 4, [103] = 4, [104] = 10,
	}
	if t == 0 then return math.max(length, 64) end
	if t == 1 then return has_cap(caps, CAP_DEVICE_VERSION) and 10 or 8 end
	if t == 5 then
		local n = 96
		if has_cap(caps, CAP_EP_MPS) then n = n + 64 end
		if has_cap(caps, CAP_BULK_STREAMS) then n = n + 128 end
		return n
	end
	if t == 101 then return has_cap(caps, CAP_BULK32) and 10 or 8 end
	return fixed[t]
end

-- Names of standard and common class requests, as usbgate's text output has them.
local std_requests = {
	[0] = "GET_STATUS", [1] = "CLEAR_FEATURE", [3] = "SET_FEATURE", [5] = "SET_ADDRESS",
	[6] = "GET_DESCRIPTOR", [7] = "SET_DESCRIPTOR", [8] = "GET_CONFIGURATION",
	[9] = "SET_CONFIGURATION", [10] = "GET_INTERFACE", [11] = "SET_INTERFACE",
	[12] = "SYNCH_FRAME", [0x30] = "SET_SEL", [0x31] = "SET_ISOCH_DELAY",
}
local class_requests = {
	[0x01] = "GET_REPORT", [0x02] = "GET_IDLE", [0x03] = "GET_PROTOCOL", [0x09] = "SET_REPORT",
	[0x0a] = "SET_IDLE", [0x0b] = "SET_PROTOCOL", [0x20] = "SET_LINE_CODING",
	[0x21] = "GET_LINE_CODING", [0x22] = "SET_CONTROL_LINE_STATE", [0x23] = "SEND_BREAK",
	[0xfe] = "GET_MAX_LUN", [0xff] = "BULK_ONLY_MASS_STORAGE_RESET",
}
local descriptor_names = {
	[1] = "DEVICE", [2] = "CONFIGURATION", [3] = "STRING", [4] = "INTERFACE", [5] = "ENDPOINT",
	[6] = "DEVICE_QUALIFIER", [7] = "OTHER_SPEED_CONFIGURATION", [8] = "INTERFACE_POWER",
	[0x0b] = "INTERFACE_ASSOCIATION", [0x0f] = "BOS", [0x21] = "HID", [0x22] = "REPORT",
	[0x23] = "PHYSICAL", [0x29] = "HUB",
}

-- A C string in a fixed field: up to the first NUL, which may be missing.
local function cstring(range)
	local raw = range:raw()
	local nul = raw:find("\0", 1, true)
	if nul then raw = raw:sub(1, nul - 1) end
	return (raw:gsub("[^\32-\126]", "?"))
end

local function request_summary(rt, req, value, index, length)
	local kind = bit.band(rt, 0x60)
	if kind == 0 and std_requests[req] then
		local name = std_requests[req]
		if req == 6 or req == 7 then
			local d = descriptor_names[bit.rshift(value, 8)] or
				string.format("type 0x%02x", bit.rshift(value, 8))
			if bit.band(value, 0xff) == 0 and index == 0 then
				return string.format("%s %s len %d", name, d, length)
			end
			return string.format("%s %s index %d lang 0x%04x len %d", name, d,
				bit.band(value, 0xff), index, length)
		elseif req == 9 or req == 5 then
			return string.format("%s %d", name, value)
		elseif req == 11 then
			return string.format("%s interface %d alt %d", name, index, value)
		elseif req == 10 then
			return string.format("%s interface %d", name, index)
		end
		return string.format("%s value 0x%04x index %d len %d", name, value, index, length)
	end
	if kind == 0x20 and bit.band(rt, 0x1f) == 1 and class_requests[req] then
		return string.format("%s value 0x%04x interface %d len %d", class_requests[req], value,
			index, length)
	end
	local k = (kind == 0x20 and "class") or (kind == 0x40 and "vendor") or "reserved"
	return string.format("%s request 0x%02x value 0x%04x index 0x%04x len %d", k, req, value,
		index, length)
end

-- ---- the usbmon view: records the guest's kernel would have logged ---------

local usbmon_dissector = DissectorTable.get("wtap_encap"):get_dissector(wtap_encaps.USB_LINUX_MMAPPED)

local sessions   -- per session: pending requests, endpoint intervals, URB counter
local frames     -- per frame number: the usbmon records made on the first pass

function usbredir.init()
	sessions = {}
	frames = {}
end

local function session_state(n)
	local s = sessions[n]
	if not s then
		s = { pending = {}, interval = {}, mps = {}, bpt = {}, next_urb = 1 }
		sessions[n] = s
	end
	return s
end

local EINPROGRESS, ENOENT, EINVAL, EPROTO, EPIPE, ETIMEDOUT, EOVERFLOW, EXDEV =
	-115, -2, -22, -71, -32, -110, -75, -18
local linux_status = { [0] = 0, [1] = ENOENT, [2] = EINVAL, [3] = EPROTO, [4] = EPIPE,
	[5] = ETIMEDOUT, [6] = EOVERFLOW }

-- One 64-byte usbmon header plus descriptors and data, as a byte string.
local function usbmon_record(x, event, status, urb_len, data, ts)
	local in_dir = bit.band(x.ep, 0x80) ~= 0
	local iso = x.xfer == 0
	local flag_setup = (event == "S" and x.setup) and 0 or string.byte("-")
	local flag_data = 0
	if event == "S" and in_dir then flag_data = string.byte("<") end
	if event == "C" and not in_dir then flag_data = string.byte(">") end
	data = data or ""
	local desc = ""
	local urb_status = status
	local setup = x.setup or string.rep("\0", 8)
	if event ~= "S" then setup = string.rep("\0", 8) end
	if iso then
		local fstatus = (event == "S") and EXDEV or status
		desc = Struct.pack("<i4I4I4I4", fstatus, 0, urb_len, 0)
		setup = Struct.pack("<i4i4", (event == "C" and status ~= 0) and 1 or 0, 1)
		if event == "C" and status ~= ENOENT then urb_status = 0 end
	end
	local interval = (x.xfer == 1 or iso) and (x.interval or 0) or 0
	local flags = (in_dir and 0x200 or 0) + (iso and 0x2 or 0)
	local sec = math.floor(ts.secs)
	local usec = ts.usecs
	local hdr = Struct.pack("<I4I4BBBBHBBI4I4i4i4I4I4", x.urb, x.urb_hi, string.byte(event),
		x.xfer, x.ep, x.dev, 1, flag_setup, flag_data, sec % 4294967296,
		math.floor(sec / 4294967296), usec, urb_status, urb_len, #data + #desc)
	local tail = Struct.pack("<i4i4I4I4", interval, 0, flags, iso and 1 or 0)
	return hdr .. setup .. tail .. desc .. data
end

local function setup_bytes(rt, req, value, index, length)
	return Struct.pack("<BBHHH", rt, req, value, index, length)
end

-- Works out the usbmon records of one usbredir packet (first pass only).
local function usbmon_records(pinfo, p)
	local s = session_state(p.session)
	local out = {}
	local function new_xfer(xfer, ep, setup)
		local x = { xfer = xfer, ep = ep, setup = setup, dev = p.session % 128,
			urb = (s.next_urb * 64) % 4294967296, urb_hi = 0xffff8880 + p.session % 16,
			interval = s.interval[ep] }
		if x.dev == 0 then x.dev = 1 end
		s.next_urb = s.next_urb + 1
		return x
	end
	local t, key = p.type, tostring(p.id)
	-- abs_ts is a double: good to the microsecond the usbmon header keeps.
	local secs = math.floor(pinfo.abs_ts)
	local nts = { secs = secs, usecs = math.min(999999,
		math.floor((pinfo.abs_ts - secs) * 1e6 + 0.5)) }
	if p.dir == 0 then
		local x
		if t == 25 and p.endpoint then
			s.bpt[p.endpoint] = p.bytes_per_transfer
			return out
		end
		if t == 100 then
			x = new_xfer(2, bit.band(p.requesttype, 0x80),
				setup_bytes(p.requesttype, p.request, p.value, p.index, p.xlength))
		elseif t == 101 or t == 103 or t == 102 or t == 104 then
			local xfer = ({ [101] = 3, [102] = 0, [103] = 1, [104] = 3 })[t]
			x = new_xfer(xfer, p.endpoint, nil)
		elseif t == 6 then
			x = new_xfer(2, 0, setup_bytes(0, 9, p.configuration, 0, 0))
		elseif t == 7 then
			x = new_xfer(2, 0x80, setup_bytes(0x80, 8, 0, 0, 1))
			p.xlength = 1
		elseif t == 9 then
			x = new_xfer(2, 0, setup_bytes(1, 11, p.alt, p.interface, 0))
		elseif t == 10 then
			x = new_xfer(2, 0x80, setup_bytes(0x81, 10, 0, p.interface, 1))
			p.xlength = 1
		else
			return out
		end
		x.type = t
		local in_dir = bit.band(x.ep, 0x80) ~= 0
		local len = p.xlength or 0
		if not in_dir then len = p.data_total or 0 end
		if t == 100 then len = p.xlength end
		table.insert(out, usbmon_record(x, "S", EINPROGRESS, len,
			(not in_dir) and p.data or nil, nts))
		if t == 102 and not in_dir then
			-- Iso OUT packets get no answer: they complete as sent.
			table.insert(out, usbmon_record(x, "C", linux_status[p.status] or EPROTO,
				p.data_total or 0, nil, nts))
		else
			s.pending[key] = x
		end
		return out
	end
	-- host -> guest
	if t == 5 then
		for ep, iv in pairs(p.intervals or {}) do s.interval[ep] = iv end
		for ep, m in pairs(p.mps or {}) do s.mps[ep] = m end
		return out
	end
	local x = s.pending[key]
	if t >= 100 and t <= 104 then
		if x and x.type == t then
			s.pending[key] = nil
			local in_dir = bit.band(x.ep, 0x80) ~= 0
			table.insert(out, usbmon_record(x, "C", linux_status[p.status] or EPROTO,
				p.xlength or 0, in_dir and p.data or nil, nts))
		elseif bit.band(p.endpoint or 0, 0x80) ~= 0 and (t == 102 or t == 103 or t == 104) then
			-- Stream data the host pushed: submit and completion at once.
			local xfer = ({ [102] = 0, [103] = 1, [104] = 3 })[t]
			local y = new_xfer(xfer, p.endpoint, nil)
			-- The guest's URB asked for a max packet (bytes_per_transfer
			-- for bulk receiving), as lib/transfer-tracker.c assumes.
			local asked = (t == 104) and (s.bpt[p.endpoint] or 0) or (s.mps[p.endpoint] or 0)
			asked = math.max(asked, p.data_total or 0)
			table.insert(out, usbmon_record(y, "S", EINPROGRESS, asked, nil, nts))
			table.insert(out, usbmon_record(y, "C", linux_status[p.status] or EPROTO,
				p.data_total or 0, p.data, nts))
		else
			out.unpaired = true
		end
	elseif t == 8 or t == 11 then
		if x and ((t == 8 and (x.type == 6 or x.type == 7)) or
		          (t == 11 and (x.type == 9 or x.type == 10))) then
			s.pending[key] = nil
			local data, n = nil, 0
			if bit.band(x.ep, 0x80) ~= 0 and p.status == 0 then
				data = string.char(t == 8 and p.configuration or p.alt)
				n = 1
			end
			table.insert(out, usbmon_record(x, "C", linux_status[p.status] or EPROTO, n,
				data, nts))
		else
			out.unpaired = true
		end
	end
	return out
end

-- ---- the usbredir tree ------------------------------------------------------

local function dissect_type_header(tvb, off, tree, p, caps)
	local t = p.type
	local function u8(f, o) tree:add_le(f, tvb(off + o, 1)); return tvb(off + o, 1):le_uint() end
	local function u16(f, o) tree:add_le(f, tvb(off + o, 2)); return tvb(off + o, 2):le_uint() end
	local function u32(f, o) tree:add_le(f, tvb(off + o, 4)); return tvb(off + o, 4):le_uint() end

	if t == 0 then
		tree:add(F.version_str, tvb(off, 64))
		local n = math.floor((p.length - 64) / 4)
		for i = 0, n - 1 do
			local w = tvb(off + 64 + 4 * i, 4):le_uint()
			local item = tree:add_le(F.cap_word, tvb(off + 64 + 4 * i, 4))
			for b = 0, 31 do
				if bit.band(w, bit.lshift(1, b)) ~= 0 then
					item:add(F.cap, tvb(off + 64 + 4 * i, 4),
						cap_names[32 * i + b] or ("cap " .. (32 * i + b)))
				end
			end
		end
		p.summary = string.format("\"%s\"", cstring(tvb(off, 64)))
	elseif t == 1 then
		u8(F.speed, 0); u8(F.dev_class, 1); u8(F.dev_subclass, 2); u8(F.dev_protocol, 3)
		local vid, pid = u16(F.vendor_id, 4), u16(F.product_id, 6)
		if p.hdr_len >= 10 then u16(F.bcd, 8) end
		p.summary = string.format("%04x:%04x %s speed", vid, pid,
			speed_names[tvb(off, 1):uint()] or "unknown")
	elseif t == 4 then
		local n = u32(F.interface_count, 0)
		for i = 0, math.min(n, 32) - 1 do
			local st = tree:add(usbredir, tvb(off + 4 + i, 1), "Interface " .. i)
			st:add(F.interface, tvb(off + 4 + i, 1))
			st:add(F.if_class, tvb(off + 36 + i, 1))
			st:add(F.if_subclass, tvb(off + 68 + i, 1))
			st:add(F.if_protocol, tvb(off + 100 + i, 1))
		end
		p.summary = n .. " interfaces"
	elseif t == 5 then
		p.intervals = {}
		local list = {}
		for i = 0, 31 do
			local ty = tvb(off + i, 1):uint()
			if ty ~= 255 then
				local addr = bit.bor(bit.lshift(bit.band(i, 0x10), 3), bit.band(i, 0x0f))
				local st = tree:add(usbredir, tvb(off + i, 1),
					string.format("Endpoint 0x%02x: %s", addr, ep_type_names[ty] or "?"))
				st:add(F.endpoint, tvb(off + i, 1), addr)
				st:add(F.ep_type, tvb(off + i, 1))
				st:add(F.interval, tvb(off + 32 + i, 1))
				st:add(F.interface, tvb(off + 64 + i, 1))
				if p.hdr_len >= 160 then
					st:add_le(F.max_packet_size, tvb(off + 96 + 2 * i, 2))
					p.mps = p.mps or {}
					p.mps[addr] = tvb(off + 96 + 2 * i, 2):le_uint()
				end
				if p.hdr_len >= 288 then st:add_le(F.max_streams, tvb(off + 160 + 4 * i, 4)) end
				p.intervals[addr] = tvb(off + 32 + i, 1):uint()
				table.insert(list, string.format("0x%02x:%s", addr, ep_type_names[ty] or "?"))
			end
		end
		p.summary = table.concat(list, " ")
	elseif t == 6 then
		p.configuration = u8(F.configuration, 0)
		p.summary = "configuration " .. p.configuration
	elseif t == 8 then
		p.status = u8(F.status, 0); p.configuration = u8(F.configuration, 1)
	elseif t == 9 then
		p.interface = u8(F.interface, 0); p.alt = u8(F.alt, 1)
		p.summary = string.format("interface %d alt %d", p.interface, p.alt)
	elseif t == 10 then
		p.interface = u8(F.interface, 0)
		p.summary = "interface " .. p.interface
	elseif t == 11 then
		p.status = u8(F.status, 0); p.interface = u8(F.interface, 1); p.alt = u8(F.alt, 2)
	elseif t == 12 then
		p.endpoint = u8(F.endpoint, 0); u8(F.pkts_per_urb, 1); u8(F.no_urbs, 2)
	elseif t == 13 or t == 15 or t == 16 then
		p.endpoint = u8(F.endpoint, 0)
	elseif t == 14 or t == 17 then
		p.status = u8(F.status, 0); p.endpoint = u8(F.endpoint, 1)
	elseif t == 18 then
		u32(F.endpoints, 0); u32(F.no_streams, 4)
	elseif t == 19 then
		u32(F.endpoints, 0)
	elseif t == 20 then
		u32(F.endpoints, 0); u32(F.no_streams, 4); p.status = u8(F.status, 8)
	elseif t == 25 then
		u32(F.stream_id, 0); p.bytes_per_transfer = u32(F.bytes_per_transfer, 4)
		p.endpoint = u8(F.endpoint, 8)
		u8(F.no_transfers, 9)
	elseif t == 26 then
		u32(F.stream_id, 0); p.endpoint = u8(F.endpoint, 4)
	elseif t == 27 then
		u32(F.stream_id, 0); p.endpoint = u8(F.endpoint, 4); p.status = u8(F.status, 5)
	elseif t == 100 then
		p.endpoint = u8(F.endpoint, 0)
		p.request = u8(F.request, 1)
		p.requesttype = u8(F.requesttype, 2)
		p.status = u8(F.status, 3)
		p.value = u16(F.value, 4)
		p.index = u16(F.index, 6)
		p.xlength = u16(F.data_length, 8)
		local name = request_summary(p.requesttype, p.request, p.value, p.index, p.xlength)
		tree:add(F.request_name, tvb(off, 10), name)
		p.summary = name
	elseif t == 101 then
		p.endpoint = u8(F.endpoint, 0)
		p.status = u8(F.status, 1)
		local lo = tvb(off + 2, 2):le_uint()
		u32(F.stream_id, 4)
		local hi = 0
		if p.hdr_len >= 10 then hi = u16(F.length_high, 8) end
		p.xlength = lo + hi * 65536
		tree:add(F.data_length, tvb(off + 2, 2), p.xlength)
	elseif t == 102 or t == 103 then
		p.endpoint = u8(F.endpoint, 0); p.status = u8(F.status, 1)
		p.xlength = u16(F.data_length, 2)
	elseif t == 104 then
		u32(F.stream_id, 0); p.xlength = u32(F.data_length, 4)
		p.endpoint = u8(F.endpoint, 8); p.status = u8(F.status, 9)
	end
end

function usbredir.dissector(tvb, pinfo, tree)
	pinfo.cols.protocol = "usbredir"
	local root = tree:add(usbredir, tvb(), "USB redirection")
	if tvb:len() < 24 or tvb(0, 4):string() ~= "UGRW" then
		root:add_proto_expert_info(ef_prefix)
		return
	end
	local pre = root:add(usbredir, tvb(0, 24), "usbgate record prefix")
	pre:add(F.magic, tvb(0, 4))
	pre:add(F.version, tvb(4, 1))
	pre:add(F.dir, tvb(5, 1))
	pre:add(F.flags, tvb(6, 1))
	pre:add(F.caps, tvb(8, 4))
	pre:add(F.session, tvb(12, 4))
	pre:add(F.total, tvb(16, 4))
	pre:add(F.frag_offset, tvb(20, 4))
	local p = {
		dir = tvb(5, 1):uint(), session = tvb(12, 4):uint(), total = tvb(16, 4):uint(),
	}
	local flags = tvb(6, 1):uint()
	local caps = tvb(8, 4):uint()
	local frag_offset = tvb(20, 4):uint()
	local body = tvb(24)
	local dirs = p.dir == 0 and "guest->host" or "host->guest"

	if frag_offset ~= 0 then
		root:add(F.fragment, body)
		pinfo.cols.info = string.format("#%d %s continuation of a %d-byte packet at %d",
			p.session, dirs, p.total, frag_offset)
		return
	end
	local id64 = bit.band(flags, 2) ~= 0
	local hlen = id64 and 16 or 12
	if body:len() < hlen then
		root:add_proto_expert_info(ef_short)
		return
	end
	p.type = body(0, 4):le_uint()
	p.length = body(4, 4):le_uint()
	root:add_le(F.type, body(0, 4))
	root:add_le(F.length, body(4, 4))
	if id64 then
		root:add_le(F.id, body(8, 8))
		p.id = body(8, 8):le_uint64()
	else
		root:add_le(F.id, body(8, 4))
		p.id = UInt64(body(8, 4):le_uint(), 0)
	end

	local hdr_len = type_header_size(p.type, caps, p.length, bit.band(flags, 1) ~= 0)
	local tname = type_names[p.type] or ("type " .. p.type)
	root:append_text(string.format(", %s, %s, id %s", dirs, tname, tostring(p.id)))
	local avail = body:len() - hlen
	if hdr_len then
		-- A length below the type header is the packet's own contradiction;
		-- bytes missing from the record are a cut capture. Neither decodes.
		if hdr_len > p.length or hdr_len > avail then
			root:add_proto_expert_info(ef_short)
			pinfo.cols.info = string.format("#%d %s %s id %s (short)", p.session, dirs,
				tname, tostring(p.id))
			return
		end
		p.hdr_len = hdr_len
		if hdr_len > 0 then
			local th = root:add(usbredir, body(hlen, hdr_len), tname .. " header")
			dissect_type_header(body, hlen, th, p, caps)
		end
		local data_len = avail - hdr_len
		p.data_total = p.length - hdr_len
		if data_len > 0 then
			if p.type == 23 then
				root:add(F.filter, body(hlen + hdr_len, data_len))
				p.summary = cstring(body(hlen + hdr_len, data_len))
			else
				root:add(F.data, body(hlen + hdr_len, data_len))
				p.data = body(hlen + hdr_len, data_len):bytes():raw()
			end
		end
	end

	local info = string.format("#%d %s %s id %s", p.session, dirs, tname, tostring(p.id))
	if p.endpoint and p.type ~= 100 then info = info .. string.format(" ep 0x%02x", p.endpoint) end
	if p.status and p.dir == 1 then
		info = info .. " status " .. (status_names[p.status] or p.status)
	end
	if p.summary then info = info .. " " .. p.summary end
	if p.xlength and p.type ~= 100 then info = info .. " len " .. p.xlength end

	-- The transfer, through Wireshark's own USB dissector.
	local recs = frames[pinfo.number]
	if recs == nil and not pinfo.visited and p.hdr_len then
		recs = usbmon_records(pinfo, p)
		frames[pinfo.number] = recs
	end
	local usb_info = ""
	if recs then
		if recs.unpaired then
			root:add_proto_expert_info(ef_unpaired)
		end
		pinfo.cols.info = ""
		for i, r in ipairs(recs) do
			local rt = ByteArray.new(r, true):tvb("usbmon record " .. i)
			-- Exceptions inside the USB dissectors are already shown in
			-- the tree by Wireshark (as on a usbmon capture); the Lua
			-- error the call raises on top of that would only repeat it.
			pcall(Dissector.call, usbmon_dissector, rt, pinfo, tree)
		end
		usb_info = tostring(pinfo.cols.info)
	end
	pinfo.cols.protocol:clear_fence()
	pinfo.cols.info:clear_fence()
	pinfo.cols.protocol = "usbredir"
	if usb_info ~= "" then
		info = info .. " | " .. usb_info
	end
	pinfo.cols.info = info
end
