"""Lays out the three fine-tuning benchmark tasks (classify, extract, dates) as files in this folder.

    python tests/benchmarks/tasks/build_tasks.py

Every input below was written by hand for this benchmark. The script only adds the system prompt,
renders the dates of the `dates` task in the style each sentence asks for, and writes per task
`task.json`, `train.jsonl` (80 chat examples) and `heldout.jsonl` (60 items with `input` and `expected`).
Check the result with `python tests/benchmarks/tasks/check_tasks.py`.
"""

from __future__ import annotations

import calendar
import datetime
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------------
# classify: support-ticket routing
# --------------------------------------------------------------------------------------------------

CLASSIFY_SYSTEM = (
    "You route customer support tickets. Reply with exactly one of these five labels, in lowercase, and nothing "
    "else: billing, shipping, technical, account, refund. "
    "billing = charges, invoices, prices, payment methods. "
    "shipping = delivery, tracking, couriers, delivery address. "
    "technical = bugs, errors, crashes, devices or apps not working. "
    "account = login, password, profile, email address, securing or closing an account. "
    "refund = getting money back for a return, a cancellation or a faulty item."
)

CLASSIFY_TRAIN = {
    "billing": [
        "Why does my invoice for May show $49 when my plan is $39?",
        "Can I switch from paying by card to paying by bank transfer?",
        "My card keeps getting declined at checkout even though it has funds.",
        "I need a VAT invoice with our company name on it for last quarter's purchases.",
        "There's a charge on my statement from you that I don't recognize, what is it for?",
        "How much does the premium plan cost per year if I pay upfront?",
        "Please update the credit card on file, the old one expired last month.",
        "Is there a student discount on the monthly subscription?",
        "The receipt you emailed me has the wrong billing address on it.",
        "When will I be charged for the annual renewal?",
        "Do you accept PayPal or only credit cards?",
        "hi, my monthly fee went up without any notice, what changed?",
        "Could you send me a copy of invoice INV-20417? I lost the original.",
        "I'd like to split the payment for this order into instalments, is that possible?",
        "I was quoted 120 euros on the phone but the invoice says 145.",
        "Our accounts team needs to know your payment terms for net-30 invoicing.",
    ],
    "shipping": [
        "My parcel was supposed to arrive Tuesday and it's still not here.",
        "The tracking number you gave me doesn't show any updates.",
        "Can you deliver to a PO box?",
        "I need to change the delivery address for order 5521 before it goes out.",
        "Do you ship to Canada, and how long does it take?",
        "The courier left my package at the wrong house.",
        "Does express delivery to Glasgow arrive the next morning?",
        "My order says delivered but there's nothing at my door.",
        "Is it possible to pick up my order from a local depot instead?",
        "The driver didn't ring the bell and just left a note, when can they try again?",
        "When will my order be dispatched? It's been four days.",
        "Which carrier do you use for international orders?",
        "I'll be away next week, can you hold my delivery until the 20th?",
        "Only one of my two boxes showed up, where's the other one?",
        "Can I get an evening time slot for the delivery?",
        "Order still says 'processing' and I needed it by Friday, will it make it?",
    ],
    "technical": [
        "The app crashes every time I open the settings page.",
        "I get an error 500 when I try to upload a photo.",
        "The website won't load on Safari, just a blank white screen.",
        "My smart speaker stopped connecting to wifi after the last update.",
        "Notifications aren't showing up on my Android phone.",
        "The export to CSV button does nothing when I click it.",
        "Sync between my laptop and phone has been stuck for two days.",
        "The device keeps rebooting on its own every few minutes.",
        "The search bar returns no results even for items I know exist.",
        "Videos in the app freeze after about ten seconds.",
        "Bluetooth pairing fails with the message 'device not found'.",
        "Your API has been returning timeouts on every request since this morning.",
        "The printer driver won't install on Windows 11.",
        "Dark mode makes half the buttons invisible.",
        "The battery on the tracker drains in a few hours even when it's idle.",
        "Page layout is broken on mobile, the menu covers everything.",
    ],
    "account": [
        "I forgot my password and the reset email never arrives.",
        "How do I change the email address on my profile?",
        "Please delete my account and all my personal data.",
        "I'm locked out after too many login attempts.",
        "Can I change my username without losing my history?",
        "I see logins from another country, I think someone else got into my account.",
        "How do I turn on two-factor authentication?",
        "I got a new phone and can't receive the verification codes any more.",
        "I'd like to merge my two accounts into one.",
        "How do I add a second user to our family profile?",
        "My account got suspended and I don't know why.",
        "Can I update my date of birth? It was entered wrong at sign-up.",
        "I want to stop the marketing emails but keep my account open.",
        "I signed up with Google, how do I set a normal password instead?",
        "The sign-in page says my email isn't registered but I've used it for years.",
        "Please transfer ownership of our workspace to my colleague.",
    ],
    "refund": [
        "I returned the jacket two weeks ago, when will I get my money back?",
        "The blender arrived broken and I'd like a full refund please.",
        "I cancelled my order within an hour, can the payment be reversed?",
        "The shoes don't fit, I want to send them back and get reimbursed.",
        "You said the refund would take 5 days, it's been 12.",
        "I was never given the service I paid for, please return my money.",
        "Can I get my money back for the concert tickets since the show was cancelled?",
        "How do I request a refund for an unused gift card?",
        "I only received half of what I paid back for the returned lamp.",
        "The item was not as described, I'd like to return it for my money back.",
        "Please reimburse the shipping fee, the package arrived three weeks late.",
        "I cancelled during the free trial but was charged anyway; I want that money returned.",
        "Is the refund going to my original card or as store credit?",
        "The course was nothing like advertised, I'd like my fee returned.",
        "I sent back the headphones and tracking shows you received them, where's my refund?",
        "Can I return an opened item and still get the full price back?",
    ],
}

CLASSIFY_HELDOUT = {
    "billing": [
        "what's this $12.99 on my bank statement labelled with your company name??",
        "Good afternoon, may we receive a consolidated invoice for all purchases made in March?",
        "pricing for the team tier, is it per seat or flat?",
        "Tried paying with my Visa three times and it keeps being rejected.",
        "Can the renewal go on my Mastercard instead of the Amex from now on?",
        "hey the tax on my bill looks way too high, can someone explain",
        "We're billed for 10 users but we only have 6.",
        "Is sales tax included in the price shown, or added at the end?",
        "Please add our PO number 77812 to the invoice header.",
        "Do you offer a cheaper rate for nonprofits?",
        "My subscription fee was taken on the 3rd instead of the 1st as usual, why?",
        "Where can I download past invoices? Need them for my accountant.",
    ],
    "shipping": [
        "parcel stuck in customs for 9 days, any idea when it'll move?",
        "Hello, could the package be left with my neighbour at number 14 instead?",
        "tracking hasnt changed since it left the warehouse on monday",
        "Do you offer next-day shipping to Ireland?",
        "The van came while I was at work. How do I rearrange it?",
        "Is there any way to send my order to my office rather than home?",
        "Where exactly is my package right now? Ordered on the 2nd.",
        "The delivery estimate keeps moving back a day, every single day.",
        "Can orders be collected in store in Leeds?",
        "My order was marked as shipped but the label was never scanned by the carrier.",
        "How long does standard post take to rural areas?",
        "Got a 'failed delivery' text but I was home all day.",
    ],
    "technical": [
        "getting 'unexpected token' error whenever i hit save",
        "After updating to version 4.2 the app just shows a spinning wheel forever.",
        "Good morning. The firmware update failed at 60% and now the unit will not power on.",
        "Charts on the dashboard render as empty grey boxes in Firefox.",
        "the camera feed lags like 5 seconds behind, makes it useless",
        "Webhooks stopped firing to our endpoint around 2am UTC.",
        "Touchscreen doesn't register taps in the bottom corner.",
        "Audio cuts out every time I switch between apps.",
        "The thermostat reads about four degrees off from the actual room temperature.",
        "The PDF reports come out with all the text overlapping.",
        "Keyboard shortcuts stopped working after the latest patch.",
        "Is anyone else seeing the map not load? It's just a grey grid.",
    ],
    "account": [
        "cant log in, says wrong password but i literally just reset it",
        "Hi there! I'd like to close my profile permanently, what's the process?",
        "How can I switch my login from my work email to a personal one?",
        "lost access to my authenticator app, how do i get back in",
        "Someone changed my password without me knowing. Please help me lock things down.",
        "Is it possible to have my display name changed to my married name?",
        "We need to remove a former employee from our team admin list.",
        "My account has shown 'pending verification' for a week now.",
        "Could you tell me which email my account was registered with? I have several.",
        "I'd like a copy of all the personal data you hold about me.",
        "Why am I asked to verify my identity every single time I sign in?",
        "Please reactivate my account, I closed it by mistake last month.",
    ],
    "refund": [
        "want my money back for the broken kettle, this is ridiculous",
        "Dear team, the hotel booking was cancelled by the provider; kindly reimburse the deposit.",
        "it's been a month since you got the return and still nothing back on my card",
        "The sofa cover faded after one wash. I'd rather have the money than a replacement.",
        "How many days until the returned amount shows up in my bank account?",
        "I ordered two by mistake and sent one back, please pay me back for it.",
        "The workshop got moved to a date I can't make, so I'd like the ticket price returned.",
        "Can you put the reimbursement on a different card? The old one is closed.",
        "Got a partial refund, but I returned the whole set.",
        "Sent the vacuum back unopened. Still waiting on my money.",
        "Your app subscription renewed the day after I cancelled; I want that amount reversed.",
        "Is it too late to get a refund on something I bought 40 days ago?",
    ],
}

# --------------------------------------------------------------------------------------------------
# extract: order message -> JSON with name, city, product, quantity
# --------------------------------------------------------------------------------------------------

EXTRACT_SYSTEM = (
    "Extract the order details from the customer's message. Reply with only one line of JSON with exactly these "
    'keys, in this order: "name", "city", "product", "quantity". Copy name, city and product exactly as they are '
    "written in the message (product in lowercase, without the number); quantity is an integer, so write numbers "
    'given in words as digits. Example: {"name": "Ann Lee", "city": "Rome", "product": "blue pens", "quantity": 4}'
)

# (message, name, city, product, quantity)
EXTRACT_TRAIN = [
    ("Hi, this is Maria Lopez from Lyon. I'd like to order 3 ceramic mugs.", "Maria Lopez", "Lyon", "ceramic mugs", 3),
    (
        "Please send four wool blankets to Denver. The order is for James Carter.",
        "James Carter",
        "Denver",
        "wool blankets",
        4,
    ),
    ("Order for Aiko Tanaka in Osaka: 2 desk lamps.", "Aiko Tanaka", "Osaka", "desk lamps", 2),
    (
        "Could I get twelve notebooks delivered to Dublin? My name is Liam O'Brien.",
        "Liam O'Brien",
        "Dublin",
        "notebooks",
        12,
    ),
    ("Sofia Rossi here, Milan. Need 6 phone cases asap.", "Sofia Rossi", "Milan", "phone cases", 6),
    ("I want one coffee grinder. Name: Daniel Kim, city: Seoul.", "Daniel Kim", "Seoul", "coffee grinder", 1),
    ("Priya Sharma, Pune, would like to buy five yoga mats.", "Priya Sharma", "Pune", "yoga mats", 5),
    ("Ship 10 bath towels to Lucas Martin, Toulouse.", "Lucas Martin", "Toulouse", "bath towels", 10),
    ("hello, emma novak from prague, can i order 2 water bottles", "emma novak", "prague", "water bottles", 2),
    ("From Amman: Omar Haddad needs seven printer cartridges.", "Omar Haddad", "Amman", "printer cartridges", 7),
    ("Three scented candles please, for Chloe Dubois in Marseille.", "Chloe Dubois", "Marseille", "scented candles", 3),
    ("Mateo Garcia (Seville) - 8 tennis balls", "Mateo Garcia", "Seville", "tennis balls", 8),
    (
        "Good morning, I'm Hannah Schmidt and I live in Munich. Please reserve nine wine glasses for me.",
        "Hannah Schmidt",
        "Munich",
        "wine glasses",
        9,
    ),
    ("Can you deliver 20 paper lanterns to Ahmedabad? Ravi Patel", "Ravi Patel", "Ahmedabad", "paper lanterns", 20),
    ("Ingrid Larsen in Bergen wants a dozen tulip bulbs.", "Ingrid Larsen", "Bergen", "tulip bulbs", 12),
    ("Name's Noah Williams. Austin. One electric kettle, please.", "Noah Williams", "Austin", "electric kettle", 1),
    ("I'd like 4 bento boxes sent to Sapporo, please. Yuki Sato", "Yuki Sato", "Sapporo", "bento boxes", 4),
    ("Fatima Zahra, Casablanca - ordering eleven silk scarves.", "Fatima Zahra", "Casablanca", "silk scarves", 11),
    ("Portland customer Ethan Brooks: 3 camping chairs.", "Ethan Brooks", "Portland", "camping chairs", 3),
    ("Please put me down for six jars of honey. Elena Petrova, Kazan.", "Elena Petrova", "Kazan", "jars of honey", 6),
    (
        "This order is from Samuel Okafor in Lagos, for 15 school backpacks.",
        "Samuel Okafor",
        "Lagos",
        "school backpacks",
        15,
    ),
    ("Grace Chen, Taipei, 2 tea sets", "Grace Chen", "Taipei", "tea sets", 2),
    ("I need eight picture frames. Deliver to Brno, name Tomas Novotny.", "Tomas Novotny", "Brno", "picture frames", 8),
    ("Isabel Costa ordering from Porto: one cast iron skillet.", "Isabel Costa", "Porto", "cast iron skillet", 1),
    ("Jack Thompson, Leeds. Could you send 5 rugby balls?", "Jack Thompson", "Leeds", "rugby balls", 5),
    ("Hi! Leila Karimi here. Three table lamps to Istanbul please.", "Leila Karimi", "Istanbul", "table lamps", 3),
    ("Victor Almeida would like 30 paper cups delivered to Recife.", "Victor Almeida", "Recife", "paper cups", 30),
    ("For Nina Berg in Oslo: two winter jackets.", "Nina Berg", "Oslo", "winter jackets", 2),
    ("Please ship nine garden gnomes to Henry Walsh in Cork.", "Henry Walsh", "Cork", "garden gnomes", 9),
    ("Amara Nwosu from Accra wants to order 4 laptop stands.", "Amara Nwosu", "Accra", "laptop stands", 4),
    ("I'm Felix Wagner in Hamburg; please send 14 beer steins.", "Felix Wagner", "Hamburg", "beer steins", 14),
    ("Zoe Mitchell - Boston - ten throw pillows.", "Zoe Mitchell", "Boston", "throw pillows", 10),
    ("Order: 2 cricket bats. Customer: Arjun Mehta. City: Mumbai.", "Arjun Mehta", "Mumbai", "cricket bats", 2),
    ("Clara Jensen here from Aarhus, I would like one standing desk.", "Clara Jensen", "Aarhus", "standing desk", 1),
    (
        "Diego Ramirez in Guadalajara needs 7 clay pots for his restaurant.",
        "Diego Ramirez",
        "Guadalajara",
        "clay pots",
        7,
    ),
    (
        "Hello from Stuttgart! Mia Fischer would like to order five bike helmets.",
        "Mia Fischer",
        "Stuttgart",
        "bike helmets",
        5,
    ),
    ("Kwame Mensah, Kumasi. I need 25 exercise books for my class.", "Kwame Mensah", "Kumasi", "exercise books", 25),
    ("Could Lucy Evans in Cardiff get 3 knitting kits?", "Lucy Evans", "Cardiff", "knitting kits", 3),
    ("six fur hats for Pavel Ivanov, Novosibirsk", "Pavel Ivanov", "Novosibirsk", "fur hats", 6),
    ("Sara Lindqvist (Uppsala) would like 2 floor lamps, thanks.", "Sara Lindqvist", "Uppsala", "floor lamps", 2),
    ("Ben Foster ordering eight dog leashes, shipping to Bristol.", "Ben Foster", "Bristol", "dog leashes", 8),
    ("Please deliver 12 shea butter tubs to Aisha Bello in Abuja.", "Aisha Bello", "Abuja", "shea butter tubs", 12),
    ("Marco Bianchi, Turin: one espresso machine please.", "Marco Bianchi", "Turin", "espresso machine", 1),
    ("Julia Kowalski from Gdansk, ordering 4 linen tablecloths.", "Julia Kowalski", "Gdansk", "linen tablecloths", 4),
    ("Oliver Grant wants nine golf umbrellas sent to Perth.", "Oliver Grant", "Perth", "golf umbrellas", 9),
    ("Rosa Mendes in Braga would like ten cork coasters.", "Rosa Mendes", "Braga", "cork coasters", 10),
    ("Two rice cookers for Kenji Watanabe, Nagoya, please.", "Kenji Watanabe", "Nagoya", "rice cookers", 2),
    ("Alice Moreau - Bordeaux - 6 wine openers", "Alice Moreau", "Bordeaux", "wine openers", 6),
    ("Hugo Lefevre here. Send 3 drawing tablets to Lille.", "Hugo Lefevre", "Lille", "drawing tablets", 3),
    ("Tara Singh, Chandigarh, needs fifteen steel tiffins.", "Tara Singh", "Chandigarh", "steel tiffins", 15),
    (
        "My name is Connor Byrne and I'm in Galway. I'd like 2 fishing rods.",
        "Connor Byrne",
        "Galway",
        "fishing rods",
        2,
    ),
    ("Ana Ferreira in Lisbon is after five sardine tins.", "Ana Ferreira", "Lisbon", "sardine tins", 5),
    (
        "Please process an order of 40 name badges for Rachel Stein, Chicago.",
        "Rachel Stein",
        "Chicago",
        "name badges",
        40,
    ),
    ("Ahmed Farouk, Cairo - one brass lantern", "Ahmed Farouk", "Cairo", "brass lantern", 1),
    (
        "I live in Vienna and my name is Lena Huber. Please send 3 advent calendars.",
        "Lena Huber",
        "Vienna",
        "advent calendars",
        3,
    ),
    ("Quantity: 8. Product: glass jars. Name: Tom Becker. City: Leipzig.", "Tom Becker", "Leipzig", "glass jars", 8),
    ("Wei Zhang in Chengdu would like eleven bamboo steamers.", "Wei Zhang", "Chengdu", "bamboo steamers", 11),
    ("Could you send two hammocks to Cartagena? It's for Valeria Rios.", "Valeria Rios", "Cartagena", "hammocks", 2),
    ("Ivan Horvat, Zagreb. Six travel pillows please.", "Ivan Horvat", "Zagreb", "travel pillows", 6),
    ("Leilani Kahale in Honolulu wants one ukulele.", "Leilani Kahale", "Honolulu", "ukulele", 1),
    (
        "Hi, Peter Novak from Bratislava. I need 16 folding chairs for an event.",
        "Peter Novak",
        "Bratislava",
        "folding chairs",
        16,
    ),
    ("Send 5 soap bars to Nadia Rahman, Dhaka.", "Nadia Rahman", "Dhaka", "soap bars", 5),
    ("Moritz Keller (Zurich) orders 2 fondue sets.", "Moritz Keller", "Zurich", "fondue sets", 2),
    ("Can I order seven cotton tote bags? I'm Hana Sato in Kobe.", "Hana Sato", "Kobe", "cotton tote bags", 7),
    ("Elif Demir, Izmir: three tea trays.", "Elif Demir", "Izmir", "tea trays", 3),
    ("This is Jonas Berg from Stockholm, four ski goggles please.", "Jonas Berg", "Stockholm", "ski goggles", 4),
    ("Ordering 9 spice jars - Meera Iyer, Chennai.", "Meera Iyer", "Chennai", "spice jars", 9),
    ("Lukas Meyer in Cologne wants 20 party balloons.", "Lukas Meyer", "Cologne", "party balloons", 20),
    ("Please send a single baby stroller to Emily Ward in Denver.", "Emily Ward", "Denver", "baby stroller", 1),
    ("Greta Olsen, Copenhagen. Ten candle holders.", "Greta Olsen", "Copenhagen", "candle holders", 10),
    ("Santiago Vega in Bogota orders four leather wallets.", "Santiago Vega", "Bogota", "leather wallets", 4),
    (
        "Hi there, could you ship 6 herb planters to Sydney? Name is Chloe Harris.",
        "Chloe Harris",
        "Sydney",
        "herb planters",
        6,
    ),
    ("Noura Saleh - Doha - 2 prayer rugs", "Noura Saleh", "Doha", "prayer rugs", 2),
    (
        "I'm Mikko Virtanen, based in Helsinki, and I'd like three sauna buckets.",
        "Mikko Virtanen",
        "Helsinki",
        "sauna buckets",
        3,
    ),
    ("Yes hi, 12 muffin tins to Manchester for Harry Reed please.", "Harry Reed", "Manchester", "muffin tins", 12),
    ("Kofi Boateng from Tema needs one solar lamp.", "Kofi Boateng", "Tema", "solar lamp", 1),
    ("Order for Beatriz Souza, Salvador: five beach towels.", "Beatriz Souza", "Salvador", "beach towels", 5),
    ("Anton Weber, Graz, wants eight chess sets.", "Anton Weber", "Graz", "chess sets", 8),
    ("a dozen cupcake boxes for Layla Hassan in Beirut", "Layla Hassan", "Beirut", "cupcake boxes", 12),
    ("Sven Dahl in Malmo would like to buy two kayak paddles.", "Sven Dahl", "Malmo", "kayak paddles", 2),
]

EXTRACT_HELDOUT = [
    ("yo need 3 copper pans shipped to Valencia, its for Carlos Ibanez", "Carlos Ibanez", "Valencia", "copper pans", 3),
    (
        "Good evening. Kindly dispatch seven hiking poles to Wanjiru Kamau in Nairobi.",
        "Wanjiru Kamau",
        "Nairobi",
        "hiking poles",
        7,
    ),
    ("Edinburgh here! Fiona MacLeod, wanting 2 tartan scarves.", "Fiona MacLeod", "Edinburgh", "tartan scarves", 2),
    (
        "Please could Marta Wisniewska in Krakow receive ten pottery bowls?",
        "Marta Wisniewska",
        "Krakow",
        "pottery bowls",
        10,
    ),
    ("Quick order: 4 wall clocks, Rafael Nunes, Curitiba.", "Rafael Nunes", "Curitiba", "wall clocks", 4),
    ("Haruto Mori, living in Kyoto, is requesting one paper umbrella.", "Haruto Mori", "Kyoto", "paper umbrella", 1),
    (
        "We'd like 18 polo shirts for the team. Send to Melbourne, attn: Jess Walker.",
        "Jess Walker",
        "Melbourne",
        "polo shirts",
        18,
    ),
    (
        "Name - Aino Korhonen; town - Tampere; item - wool socks; how many - 6",
        "Aino Korhonen",
        "Tampere",
        "wool socks",
        6,
    ),
    ("Giulia Conti would love five pasta makers, delivered to Bologna.", "Giulia Conti", "Bologna", "pasta makers", 5),
    ("Tyler Reyes from Phoenix. 2 cooling fans, please and thank you.", "Tyler Reyes", "Phoenix", "cooling fans", 2),
    (
        "I am writing to order nine embroidered cushions for delivery to Jaipur. Regards, Anjali Rao.",
        "Anjali Rao",
        "Jaipur",
        "embroidered cushions",
        9,
    ),
    ("hey its dev malhotra in delhi, want one cricket helmet pls", "dev malhotra", "delhi", "cricket helmet", 1),
    (
        "Repeat order please - 12 oat milk cartons for Linnea Holm, Gothenburg.",
        "Linnea Holm",
        "Gothenburg",
        "oat milk cartons",
        12,
    ),
    (
        "Might I order four brass candlesticks? Deliver to Bruges, name is Pieter Claes.",
        "Pieter Claes",
        "Bruges",
        "brass candlesticks",
        4,
    ),
    ("Sebastian Cruz. Manila. 3 electric fans.", "Sebastian Cruz", "Manila", "electric fans", 3),
    ("For my shop in Antwerp I need 40 gift bags. This is Eva Peeters.", "Eva Peeters", "Antwerp", "gift bags", 40),
    ("Thabo Nkosi (Durban) would like eight braai tongs.", "Thabo Nkosi", "Durban", "braai tongs", 8),
    (
        "Ordering on behalf of my mum, Mei Lin Wong, in Penang: two rattan baskets.",
        "Mei Lin Wong",
        "Penang",
        "rattan baskets",
        2,
    ),
    ("One record player for Ruben Matos in Coimbra, please.", "Ruben Matos", "Coimbra", "record player", 1),
    (
        "Is it possible to have fifteen mason jars sent over to Nashville? Name: Kayla Dunn",
        "Kayla Dunn",
        "Nashville",
        "mason jars",
        15,
    ),
    (
        "Kindly note: customer Bilal Qureshi, city Lahore, item table fans, quantity 5",
        "Bilal Qureshi",
        "Lahore",
        "table fans",
        5,
    ),
    (
        "Olga Sokolova wants 3 matryoshka dolls shipped to Yekaterinburg.",
        "Olga Sokolova",
        "Yekaterinburg",
        "matryoshka dolls",
        3,
    ),
    ("Six lunch boxes to Hiroshima please, for Ren Kobayashi.", "Ren Kobayashi", "Hiroshima", "lunch boxes", 6),
    ("Jake Turner in San Diego, ordering 2 surfboards.", "Jake Turner", "San Diego", "surfboards", 2),
    (
        "Hello! My name's Sinead Kelly. I'm in Limerick and I'd like one rocking chair.",
        "Sinead Kelly",
        "Limerick",
        "rocking chair",
        1,
    ),
    (
        "Please arrange delivery of eleven terracotta pots to Puebla for Lucia Herrera.",
        "Lucia Herrera",
        "Puebla",
        "terracotta pots",
        11,
    ),
    ("Nikos Papadopoulos, Thessaloniki, olive oil tins x4", "Nikos Papadopoulos", "Thessaloniki", "olive oil tins", 4),
    ("Alex Moreno / Madrid / 9 / desk organizers", "Alex Moreno", "Madrid", "desk organizers", 9),
    (
        "Could you send seven packs of playing cards to Las Vegas? It's Dana Fox.",
        "Dana Fox",
        "Las Vegas",
        "packs of playing cards",
        7,
    ),
    ("Ayumi Ito from Sendai here, I need thirty origami paper packs", "Ayumi Ito", "Sendai", "origami paper packs", 30),
    ("Three smoke alarms to Winnipeg for Megan Price.", "Megan Price", "Winnipeg", "smoke alarms", 3),
    (
        "I'd like to place an order for 5 beanbag chairs; I'm Jonah Klein from Ottawa.",
        "Jonah Klein",
        "Ottawa",
        "beanbag chairs",
        5,
    ),
    (
        "Order placed by Xavier Dupont, Geneva - a dozen chocolate boxes.",
        "Xavier Dupont",
        "Geneva",
        "chocolate boxes",
        12,
    ),
    ("Karin Aberg in Lund needs two bread knives.", "Karin Aberg", "Lund", "bread knives", 2),
    ("Greetings from Hanoi. Nguyen Van An would like 10 conical hats.", "Nguyen Van An", "Hanoi", "conical hats", 10),
    ("Put down 8 shower curtains for Brandon Lee, Atlanta.", "Brandon Lee", "Atlanta", "shower curtains", 8),
    ("Abebe Tesfaye, Addis Ababa: one coffee roaster.", "Abebe Tesfaye", "Addis Ababa", "coffee roaster", 1),
    ("Could I have 6 baking trays delivered? Nora Quinn, Belfast.", "Nora Quinn", "Belfast", "baking trays", 6),
    ("Lorenzo Greco from Naples would like thirteen pizza stones", "Lorenzo Greco", "Naples", "pizza stones", 13),
    (
        "quantity twenty, item plastic crates, name Joost de Vries, city Rotterdam",
        "Joost de Vries",
        "Rotterdam",
        "plastic crates",
        20,
    ),
    (
        "Hi, shipping to Wellington please: Aroha Parata, 3 flax baskets.",
        "Aroha Parata",
        "Wellington",
        "flax baskets",
        3,
    ),
    ("Zainab Yusuf in Kano is ordering four sewing machines.", "Zainab Yusuf", "Kano", "sewing machines", 4),
    ("I need 2 air purifiers sent to Shenzhen. My name: Zhou Min.", "Zhou Min", "Shenzhen", "air purifiers", 2),
    ("Samantha Cole in Tulsa wants nine cowboy hats", "Samantha Cole", "Tulsa", "cowboy hats", 9),
    ("Please ship one telescope to Tucson. Buyer: Owen Hughes.", "Owen Hughes", "Tucson", "telescope", 1),
    ("Marek Dvorak - Ostrava - 7 toolboxes", "Marek Dvorak", "Ostrava", "toolboxes", 7),
    ("Katrin Vogel, Dresden, would like 4 cuckoo clocks please.", "Katrin Vogel", "Dresden", "cuckoo clocks", 4),
    ("Hey, Ibrahim Diallo in Dakar would like 50 plastic chairs", "Ibrahim Diallo", "Dakar", "plastic chairs", 50),
    ("Two violin bows for Camila Ortiz in Montevideo.", "Camila Ortiz", "Montevideo", "violin bows", 2),
    ("Order from Rania Aziz in Kuala Lumpur: 6 batik shirts.", "Rania Aziz", "Kuala Lumpur", "batik shirts", 6),
    (
        "Can you get 3 ergonomic keyboards out to Raleigh? Name's Derek Shaw.",
        "Derek Shaw",
        "Raleigh",
        "ergonomic keyboards",
        3,
    ),
    ("Hamid Rostami, based in Shiraz, wants ten saffron tins.", "Hamid Rostami", "Shiraz", "saffron tins", 10),
    ("Eight jigsaw puzzles for Harriet Lamb, York.", "Harriet Lamb", "York", "jigsaw puzzles", 8),
    ("Manuel Torres, in Lima, would like one alpaca blanket please", "Manuel Torres", "Lima", "alpaca blanket", 1),
    ("For delivery in Tbilisi: Giorgi Beridze, 5 wine decanters.", "Giorgi Beridze", "Tbilisi", "wine decanters", 5),
    ("Freya Nilsen (Trondheim) - two snow shovels", "Freya Nilsen", "Trondheim", "snow shovels", 2),
    (
        "I'd like fourteen mouse pads, please. Delivery city is Pittsburgh and I'm Caleb Ross.",
        "Caleb Ross",
        "Pittsburgh",
        "mouse pads",
        14,
    ),
    ("Dmitri Volkov, Minsk. 2 samovars.", "Dmitri Volkov", "Minsk", "samovars", 2),
    ("Please send 24 bottle openers to Brisbane. Regards, Mia Clarke.", "Mia Clarke", "Brisbane", "bottle openers", 24),
    ("Tomoko Hayashi from Fukuoka - 1 sake set", "Tomoko Hayashi", "Fukuoka", "sake set", 1),
]

# --------------------------------------------------------------------------------------------------
# dates: a date in words -> YYYY-MM-DD
# --------------------------------------------------------------------------------------------------

DATES_SYSTEM = (
    "Find the date in the user's message and rewrite it in ISO 8601 format. Reply with only the date as YYYY-MM-DD "
    "(four-digit year, two-digit month, two-digit day), nothing else. Example: 5 July 1999 -> 1999-07-05"
)

MONTH_ABBR = ["", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MONTH_DOT = ["", "Jan.", "Feb.", "Mar.", "Apr.", "May", "Jun.", "Jul.", "Aug.", "Sept.", "Oct.", "Nov.", "Dec."]
ORDINAL_WORDS = [
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
]


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def render(d: datetime.date, style: str) -> str:
    month, abbr, year, day = calendar.month_name[d.month], MONTH_ABBR[d.month], d.year, d.day
    weekday = calendar.day_name[d.weekday()]
    styles = {
        # styles used in training
        "mdy_ord": f"{month} {ordinal(day)}, {year}",  # March 3rd, 2021
        "dmy": f"{day} {month} {year}",  # 3 March 2021
        "mon_dy": f"{abbr} {day} {year}",  # Mar 3 2021
        "the_of": f"the {ordinal(day)} of {month} {year}",  # the 3rd of March 2021
        "mdy": f"{month} {day}, {year}",  # March 3, 2021
        "y_m_word": f"{year}, {month} the {ORDINAL_WORDS[day]}",  # 2021, March the third
        "dmon_y": f"{day} {abbr} {year}",  # 3 Mar 2021
        "ord_my": f"{ordinal(day)} {month} {year}",  # 3rd March 2021
        # styles kept for the held-out set
        "m_the_ord_y": f"{month} the {ordinal(day)}, {year}",  # March the 3rd, 2021
        "mon_dot": f"{MONTH_DOT[d.month]} {day}, {year}",  # Mar. 3, 2021 / Sept. 14, 2019
        "wk_dmy": f"{weekday}, {day} {month} {year}",  # Wednesday, 3 March 2021
        "word_of": f"the {ORDINAL_WORDS[day]} of {month}, {year}",  # the third of March, 2021
        "y_m_d": f"{year} {month} {day}",  # 2021 March 3
        "d_mon_y_dash": f"{day:02d}-{abbr}-{year}",  # 03-Mar-2021
        "ord_mon_y": f"{ordinal(day)} {abbr} {year}",  # 3rd Mar 2021
        "m_ord_y": f"{month} {ordinal(day)} {year}",  # March 3rd 2021
        "wk_mdy": f"{weekday}, {month} {day}, {year}",  # Wednesday, March 3, 2021
    }
    return styles[style]


BARE = "{d}"

# (sentence with {d}, style of the date)
DATES_TRAIN = [
    ("My flight leaves on {d}.", "the_of"),
    ("The invoice is dated {d}.", "mdy"),
    ("She was born on {d}.", "dmy"),
    ("Please book the meeting room for {d}.", "mdy_ord"),
    ("We got married on {d}.", "ord_my"),
    ("The contract expires {d}.", "mon_dy"),
    ("Delivery is expected on {d}.", "dmon_y"),
    ("The concert was held on {d}.", "the_of"),
    ("I started this job on {d}.", "mdy"),
    ("Deadline: {d}", "mon_dy"),
    ("We moved into the flat on {d}.", "dmy"),
    ("Can you remind me about the dentist on {d}?", "mdy_ord"),
    ("The warranty runs out on {d}.", "ord_my"),
    ("Date of birth: {d}", "dmy"),
    ("the package shipped {d}", "mon_dy"),
    ("My passport was issued on {d}.", "the_of"),
    ("Registration closes {d}, so sign up soon.", "mdy"),
    ("The store reopened on {d}.", "dmon_y"),
    ("Grandpa turned ninety on {d}.", "ord_my"),
    ("Our lease began {d}.", "mdy_ord"),
    ("The report covers everything up to {d}.", "dmy"),
    ("{d} is when the exam takes place.", "mdy"),
    ("The train ticket is for {d}.", "mon_dy"),
    ("I last saw the doctor on {d}.", "the_of"),
    ("Recorded: {d}", "y_m_word"),
    ("what is {d} in iso format", "mdy_ord"),
    ("The bridge opened to traffic on {d}.", "dmy"),
    ("Convert this date please: {d}", "y_m_word"),
    ("hey can u write {d} as yyyy-mm-dd", "mon_dy"),
    ("Our office will be closed on {d}.", "mdy_ord"),
    ("The photo was taken on {d}.", "the_of"),
    ("Interview scheduled for {d}.", "dmon_y"),
    ("I submitted the application on {d}.", "mdy"),
    ("The ship sank on {d}.", "ord_my"),
    ("Entry dated {d}", "y_m_word"),
    ("He retired from the company on {d}.", "dmy"),
    ("The course starts {d}.", "mdy_ord"),
    ("my checkout date at the hotel is {d}", "mon_dy"),
    ("We adopted our cat on {d}.", "the_of"),
    ("The initial payment is due {d}.", "mdy"),
    ("The library book must be returned by {d}.", "dmon_y"),
    ("Signed on {d}", "y_m_word"),
    ("The festival ended on {d}.", "ord_my"),
    ("Our baby is due on {d}.", "dmy"),
    ("Please note the hearing date: {d}.", "mdy_ord"),
    ("The software was released {d}.", "mon_dy"),
    ("They opened the restaurant on {d}.", "the_of"),
    ("The census was taken on {d}.", "mdy"),
    ("Appointment confirmed for {d}.", "dmon_y"),
    ("I got my driving licence on {d}.", "ord_my"),
    ("Minutes of the board meeting, {d}", "y_m_word"),
    ("The match was played on {d}.", "dmy"),
    ("We're flying back {d}.", "mdy_ord"),
    ("Batch produced {d}", "mon_dy"),
    ("The ceremony took place on {d}.", "the_of"),
    ("Effective date of the policy: {d}", "mdy"),
    ("Best before {d}", "dmon_y"),
    ("Mum's surgery is booked for {d}.", "ord_my"),
    ("Letter written {d}", "y_m_word"),
    ("The museum exhibit opens {d}.", "dmy"),
    ("I'm starting my new diet on {d}, wish me luck!", "mdy_ord"),
    ("The car was serviced {d}.", "mon_dy"),
    ("Their debut album came out on {d}.", "the_of"),
    ("Tax returns were filed on {d}.", "mdy"),
    (BARE, "mdy_ord"),
    (BARE, "dmy"),
    (BARE, "mon_dy"),
    (BARE, "the_of"),
    (BARE, "mdy"),
    (BARE, "y_m_word"),
    (BARE, "dmon_y"),
    (BARE, "ord_my"),
    (BARE, "mdy_ord"),
    (BARE, "dmy"),
    (BARE, "mon_dy"),
    (BARE, "the_of"),
    (BARE, "mdy"),
    (BARE, "y_m_word"),
    (BARE, "dmon_y"),
    (BARE, "ord_my"),
]

# Held-out: new sentences, and mostly date styles that training never shows.
DATES_HELDOUT = [
    ("Could you pencil me in for {d}?", "m_the_ord_y"),
    ("The parcel reached us on {d}, a bit late.", "wk_dmy"),
    ("Payment was received {d} according to the bank.", "mon_dot"),
    ("im off work from {d} btw", "ord_mon_y"),
    ("Log entry for {d}: server restarted.", "y_m_d"),
    ("Expiry {d}", "d_mon_y_dash"),
    ("The shop opened its doors on {d}.", "word_of"),
    ("rent due {d}, dont forget", "m_ord_y"),
    ("The vote is scheduled for {d}.", "wk_mdy"),
    ("Hmm, I think it was {d}, maybe?", "dmy"),
    ("According to the records, the property changed hands on {d}.", "mdy"),
    ("Kick-off is {d} at the main stadium.", "the_of"),
    ("Lot B, manufactured {d}", "mon_dy"),
    ("Give me {d} in ISO form.", "m_the_ord_y"),
    ("Sorry to bother you, but what's {d} as YYYY-MM-DD?", "ord_mon_y"),
    ("Our grandmother passed away peacefully on {d}.", "word_of"),
    ("Kindly confirm your attendance for {d}.", "wk_mdy"),
    ("Tenancy ends {d}; keys go back to the agent that day.", "dmy"),
    ("the gig got moved to {d} apparently", "m_ord_y"),
    ("Issued: {d}", "d_mon_y_dash"),
    ("The storm hit the coast on {d}.", "wk_dmy"),
    ("Invoice period ending {d}", "mon_dot"),
    ("My sister's graduation ceremony is {d}.", "m_the_ord_y"),
    ("The treaty was signed {d}.", "word_of"),
    ("Reminder to self: call the bank on {d}", "ord_mon_y"),
    ("The new version went live on {d}.", "mdy"),
    ("Do you have availability on {d}?", "wk_mdy"),
    ("Shipment ETA {d}", "d_mon_y_dash"),
    ("The roof was replaced {d}, if memory serves.", "the_of"),
    ("Diary - {d}", "y_m_d"),
    ("We met at a friend's wedding on {d}.", "m_ord_y"),
    ("They broke ground on the new hospital {d}.", "mon_dot"),
    ("Please move my booking to {d}.", "ord_mon_y"),
    ("Applications must be postmarked no later than {d}.", "wk_mdy"),
    ("Term begins {d}", "mon_dy"),
    ("Last day of trading: {d}", "wk_dmy"),
    ("oh and the wedding is {d}!! so excited", "m_the_ord_y"),
    ("Final inspection was carried out on {d}.", "word_of"),
    ("Use by {d}", "d_mon_y_dash"),
    ("My bank statement shows the transfer going through {d}.", "mon_dot"),
    ("I was hired back on {d}, after a long break.", "dmy"),
    ("Memo dated {d}", "y_m_d"),
    ("Holiday starts {d} and I can't wait.", "ord_mon_y"),
    ("Our records show the account was opened {d}.", "the_of"),
    ("The power cut happened on {d}.", "wk_mdy"),
    ("Tickets are valid until {d}.", "m_ord_y"),
    ("The eclipse will be visible on {d}.", "mon_dot"),
    ("Birthday party on {d}, bring snacks", "m_the_ord_y"),
    (BARE, "y_m_d"),
    (BARE, "word_of"),
    (BARE, "d_mon_y_dash"),
    (BARE, "wk_dmy"),
    (BARE, "ord_mon_y"),
    (BARE, "m_the_ord_y"),
    (BARE, "mon_dot"),
    (BARE, "m_ord_y"),
    (BARE, "wk_mdy"),
    (BARE, "y_m_d"),
    (BARE, "word_of"),
    (BARE, "ord_mon_y"),
]

# Days whose suffixes or words are easy to get wrong; each set gets them before random days.
TRICKY_DAYS = [1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 30, 29]


def pick_dates(count: int, rng: random.Random, avoid: set[datetime.date]) -> list[datetime.date]:
    """`count` distinct dates, months in turn, tricky days first, years 1950-2035, none in `avoid`."""
    dates: list[datetime.date] = []
    i = 0
    while len(dates) < count:
        month = i % 12 + 1
        year = rng.randint(1950, 2035)
        last = calendar.monthrange(year, month)[1]
        day = TRICKY_DAYS[i] if i < len(TRICKY_DAYS) else rng.randint(1, last)
        i += 1
        d = datetime.date(year, month, min(day, last))
        if d not in avoid and d not in dates:
            dates.append(d)
    rng.shuffle(dates)
    return dates


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def extract_answer(name: str, city: str, product: str, quantity: int) -> str:
    return json.dumps({"name": name, "city": city, "product": product, "quantity": quantity}, separators=(", ", ": "))


def write_task(folder: str, task: dict, train: list[tuple[str, str]], heldout: list[tuple[str, str]]) -> None:
    out = HERE / folder
    out.mkdir(exist_ok=True)
    (out / "task.json").write_text(json.dumps(task, indent=2) + "\n")
    with (out / "train.jsonl").open("w") as f:
        for text, answer in train:
            messages = [
                {"role": "system", "content": task["system"]},
                {"role": "user", "content": text},
                {"role": "assistant", "content": answer},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with (out / "heldout.jsonl").open("w") as f:
        for text, answer in heldout:
            f.write(json.dumps({"item": {"input": text, "expected": answer}}) + "\n")


def main() -> None:
    rng = random.Random(135)

    def labelled(by_label: dict[str, list[str]]) -> list[tuple[str, str]]:
        rows = [(text, label) for label, texts in by_label.items() for text in texts]
        rng.shuffle(rows)
        return rows

    write_task(
        "classify",
        {
            "name": "classify",
            "kind": "classification",
            "system": CLASSIFY_SYSTEM,
            "description": "Route a short support ticket to one of five labels: billing, shipping, technical, "
            "account, refund. The answer is the label alone, lowercase; graded by exact match.",
        },
        labelled(CLASSIFY_TRAIN),
        labelled(CLASSIFY_HELDOUT),
    )

    def extracted(rows: list[tuple[str, str, str, str, int]]) -> list[tuple[str, str]]:
        out = [(text, extract_answer(name, city, product, quantity)) for text, name, city, product, quantity in rows]
        rng.shuffle(out)
        return out

    write_task(
        "extract",
        {
            "name": "extract",
            "kind": "extraction",
            "system": EXTRACT_SYSTEM,
            "description": "Pull name, city, product and quantity out of a short order message and answer with "
            'one line of JSON, keys in that order, e.g. {"name": "Ann Lee", "city": "Rome", "product": '
            '"blue pens", "quantity": 4}; quantity is an integer. Graded by exact match.',
        },
        extracted(EXTRACT_TRAIN),
        extracted(EXTRACT_HELDOUT),
    )

    train_dates = pick_dates(len(DATES_TRAIN), rng, set())
    heldout_dates = pick_dates(len(DATES_HELDOUT), rng, set(train_dates))

    def dated(frames: list[tuple[str, str]], dates: list[datetime.date]) -> list[tuple[str, str]]:
        pairs = zip(frames, dates, strict=True)
        out = [(frame.format(d=render(d, style)), d.isoformat()) for (frame, style), d in pairs]
        rng.shuffle(out)
        return out

    write_task(
        "dates",
        {
            "name": "dates",
            "kind": "format",
            "system": DATES_SYSTEM,
            "description": "Rewrite a date given in words (month names or abbreviations, ordinals, alone or inside "
            "a short sentence) as an ISO date YYYY-MM-DD, nothing else. Graded by exact match.",
        },
        dated(DATES_TRAIN, train_dates),
        dated(DATES_HELDOUT, heldout_dates),
    )


if __name__ == "__main__":
    main()
